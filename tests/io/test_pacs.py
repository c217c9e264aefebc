"""mkunet.io.pacs and the --dicomweb commands against a real Orthanc (tests/orthanc_server.py).

One Orthanc per module (no authentication) holds the studies the tests upload; a second one
has authentication on. The round trip uploads the IBSI CT phantom, runs ``mkunet segment
--dicomweb ... --push`` with a seed in the GTV, reads the SEG and RTSTRUCT back from Orthanc,
compares them with the file-based run and runs dciodvfy on them. Failures use real servers too:
wrong credentials, a study that does not exist, a stopped Orthanc, a slice deleted from
Orthanc's storage, plus two tiny local HTTP servers for a timeout and 5xx answers.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from mkunet.cli import app
from mkunet.io import read_mask, read_rtstruct, read_volume
from mkunet.io.pacs import (
    ENV_CA_BUNDLE,
    ENV_CONFIG,
    ENV_PASSWORD,
    ENV_TOKEN,
    ENV_USER,
    Credentials,
    DicomWebSource,
    PacsAuthError,
    PacsError,
    PacsNotFoundError,
    PacsRetrieveError,
    PacsSeriesError,
    PacsServerError,
    PacsStoreError,
    PacsTimeoutError,
    PacsUnreachableError,
    SeriesChoice,
    credentials_from_env,
    fetch_worklist,
    push_cohort,
    read_worklist,
)
from mkunet.synth.writers import write_ct_series
from mkunet.volume import Volume
from tests.io.orthanc_server import OrthancServer, missing_reason

DCIODVFY = shutil.which("dciodvfy")
IBSI_SEED_XYZ = (-75.7, 17.1, -16.4)  # mm (LPS): the deepest voxel of the IBSI GTV (33 mm from its surface)
USERS = {"mkunet": "correct-horse-battery"}
ENV_VARS = (ENV_USER, ENV_PASSWORD, ENV_TOKEN, ENV_CONFIG, ENV_CA_BUNDLE)


def source(server: OrthancServer, **kwargs) -> DicomWebSource:
    """A source without credentials (unless given), short timeout, fast retries."""
    kwargs.setdefault("credentials", Credentials())
    kwargs.setdefault("timeout_s", 10.0)
    kwargs.setdefault("retries", 1)
    kwargs.setdefault("backoff_s", 0.01)
    return DicomWebSource(server.dicomweb_url, **kwargs)


@pytest.fixture(autouse=True)
def no_credentials_in_env(monkeypatch):
    """The tests do not see the developer's own DICOMweb credentials."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    server = OrthancServer(tmp_path_factory.mktemp("orthanc")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def orthanc_auth(tmp_path_factory):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    server = OrthancServer(tmp_path_factory.mktemp("orthanc-auth"), users=USERS).start()
    yield server
    server.stop()


# ============================================================================ synthetic studies


def ct_series(
    folder: Path,
    *,
    study_uid: str,
    n: int = 6,
    thickness: float = 2.5,
    seed: int = 0,
    description: str = "axial",
    edit=None,
) -> tuple[str, np.ndarray, list[Path]]:
    """A small CT series (n x 12 x 10, int16 HU) of one study; ``edit(ds, k)`` changes a header."""
    rng = np.random.default_rng(seed)
    array = rng.integers(-1000, 1000, size=(n, 12, 10)).astype(np.float32)
    volume = Volume(array, spacing=(thickness, 0.8, 0.7), origin=(-4.0, -5.0, 20.0))
    files = write_ct_series(
        volume,
        folder,
        patient_id="PACS-1",
        patient_name="Test^Pacs",
        study_uid=study_uid,
        uid_entropy=(str(folder), seed),
        series_description=description,
    )
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.SliceThickness = f"{thickness:g}"
        if edit is not None:
            edit(ds, k)
        ds.save_as(f)
    return str(pydicom.dcmread(files[0]).SeriesInstanceUID), array, files


def new_uid(tag: str) -> str:
    return pydicom.uid.generate_uid(entropy_srcs=[tag, str(time.time_ns())])


def localizer(ds, k):
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]


def sagittal(ds, k):
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]


def mr(ds, k):
    ds.Modality = "MR"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID


def mixed(ds, k):
    if k % 2:
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]


@pytest.fixture(scope="module")
def multi_study(orthanc, tmp_path_factory):
    """One study with a usable CT series among six that are not (or are worse) candidates."""
    root = tmp_path_factory.mktemp("multi")
    study = new_uid("multi")
    series = {}
    for name, kw in {
        "thick": dict(n=12, thickness=2.5),
        "thin": dict(n=12, thickness=1.25),  # the answer: most slices, then thinnest
        "thinnest_fewer": dict(n=8, thickness=1.0),
        "localizer": dict(n=20, edit=localizer),
        "sagittal": dict(n=20, edit=sagittal),
        "mr": dict(n=20, edit=mr),
        "mixed": dict(n=20, edit=mixed),
    }.items():
        uid, array, files = ct_series(root / name, study_uid=study, description=name, seed=len(series), **kw)
        series[name] = (uid, array, files)
        source(orthanc).store(files)
    return study, series


# ============================================================================ series choice and retrieval


def test_series_choice_most_slices_then_thinnest_and_every_skip_said(orthanc, multi_study):
    study, series = multi_study
    choice = source(orthanc).find_ct_series(study)
    assert isinstance(choice, SeriesChoice)
    assert choice.chosen.series_uid == series["thin"][0]
    assert choice.chosen.n_instances == 12 and choice.chosen.slice_thickness_mm == 1.25
    assert "thinnest" in choice.reason and "12 slices" in choice.reason
    problems = {s.description: s.problem for s in choice.series}
    assert problems["thick"] == "" and problems["thinnest_fewer"] == ""
    assert "localizer" in problems["localizer"]
    assert "not axial" in problems["sagittal"]
    assert "MR" in problems["mr"] and "not CT" in problems["mr"]
    assert "mixed" in problems["mixed"] and "orientation" in problems["mixed"]
    for name in ("localizer", "sagittal", "mr", "mixed"):
        assert name in choice.reason  # "skipped: localizer (...)": the user is told why


def test_a_given_series_that_is_not_ct_or_is_mixed_is_refused(orthanc, multi_study):
    study, series = multi_study
    src = source(orthanc)
    assert src.check_series(study, series["thick"][0]).usable
    with pytest.raises(PacsSeriesError, match="not CT") as err:
        src.check_series(study, series["mr"][0])
    assert series["mr"][0] in str(err.value) and "--series" in str(err.value)
    with pytest.raises(PacsSeriesError, match="mixed"):
        src.check_series(study, series["mixed"][0])
    with pytest.raises(PacsNotFoundError, match="is not in study"):
        src.check_series(study, "1.2.3.4.5.6")


def test_study_without_ct_lists_what_it_has(orthanc, tmp_path):
    study = new_uid("mr-only")
    _, _, files = ct_series(tmp_path / "mr", study_uid=study, edit=mr, description="T1 MR")
    src = source(orthanc)
    src.store(files)
    with pytest.raises(PacsSeriesError, match="no usable CT series") as err:
        src.find_ct_series(study)
    assert study in str(err.value) and "T1 MR" in str(err.value) and "MR, not CT" in str(err.value)


def test_missing_study_names_it(orthanc):
    with pytest.raises(PacsNotFoundError, match=r"Study 1\.2\.3\.999 was not found") as err:
        source(orthanc).find_ct_series("1.2.3.999")
    assert orthanc.dicomweb_url in str(err.value)
    with pytest.raises(PacsError, match="not a DICOM UID"):
        source(orthanc).find_ct_series("1.2.x")


def test_fetch_gives_the_uploaded_pixels_and_reuses_the_cache(orthanc, multi_study, tmp_path):
    study, series = multi_study
    uid, array, files = series["thin"]
    src = source(orthanc)
    dest = tmp_path / "cache"
    dest.mkdir()
    (dest / "1.2.3.4.dcm").write_bytes(b"stale")  # an instance the series does not (or no longer) list
    vol = src.fetch_volume(study, uid, dest)
    local = read_volume(files[0].parent)
    np.testing.assert_array_equal(vol.array, np.rint(array))  # int16 HU, as written
    np.testing.assert_array_equal(vol.array, local.array)
    assert vol.spacing == local.spacing and vol.origin == local.origin and vol.study_uid == study
    assert not (dest / "1.2.3.4.dcm").exists() and len(list(dest.glob("*.dcm"))) == 12
    stamps = {p.name: p.stat().st_mtime_ns for p in dest.glob("*.dcm")}
    (dest / min(stamps)).unlink()  # one missing: only that one is retrieved again
    src.fetch_series(study, uid, dest)
    after = {p.name: p.stat().st_mtime_ns for p in dest.glob("*.dcm")}
    assert after.keys() == stamps.keys()
    assert [n for n in after if after[n] != stamps.get(n)] == [min(stamps)]


def test_a_slice_deleted_from_orthanc_storage_is_reported(orthanc, tmp_path):
    study = new_uid("broken")
    uid, _, files = ct_series(tmp_path / "s", study_uid=study, n=5)
    src = source(orthanc)
    src.store(files)
    lost = str(pydicom.dcmread(files[2]).SOPInstanceUID)
    orthanc.attachment_file(lost).unlink()  # Orthanc still counts the instance; its bytes are gone
    # (Orthanc 1.10 then fails to list the series' instances and delivers only part of the series)
    with pytest.raises(PacsRetrieveError, match=r"delivered \d of 5 slice\(s\)") as err:
        src.fetch_series(study, uid, tmp_path / "dest")
    assert study in str(err.value) and uid in str(err.value) and "--series" in str(err.value)
    # the series choice skips the damaged series (its metadata cannot be read) and takes a sound one
    good, _, good_files = ct_series(tmp_path / "good", study_uid=study, n=3, seed=1, description="sound")
    src.store(good_files)
    choice = src.find_ct_series(study)
    assert choice.chosen.series_uid == good and "metadata cannot be retrieved" in choice.reason


class _FailingProxy(http.server.BaseHTTPRequestHandler):
    """Forwards GETs to ``upstream`` (Orthanc), except those whose path ends in ``fail``: HTTP 500 (counted)."""

    upstream = ""
    fail = ""
    failed: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        import urllib.error
        import urllib.request

        if self.path.endswith(type(self).fail):
            type(self).failed.append(self.path)
            status, data, ctype = 500, b"attachment lost", "text/plain"
        else:
            headers = {"Accept": self.headers["Accept"]}
            request = urllib.request.Request(type(self).upstream + self.path, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    status, data, ctype = answer.status, answer.read(), answer.headers["Content-Type"]
            except urllib.error.HTTPError as err:
                status, data, ctype = err.code, err.read(), err.headers["Content-Type"] or "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_a_slice_the_server_lists_but_cannot_deliver_is_named(orthanc, tmp_path):
    study = new_uid("undeliverable")
    uid, _, files = ct_series(tmp_path / "s", study_uid=study, n=5)
    source(orthanc).store(files)
    lost = str(pydicom.dcmread(files[2]).SOPInstanceUID)
    # the HTTP 500 comes from a proxy in front of Orthanc, so the retry is the client library's (urllib3's)
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingProxy)
    _FailingProxy.upstream, _FailingProxy.fail, _FailingProxy.failed = orthanc.url, f"/instances/{lost}", []
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}/dicom-web"
        src = DicomWebSource(url, credentials=Credentials(), timeout_s=10.0, retries=1, backoff_s=0.01)
        real_series = src._client.retrieve_series  # the whole-series request leaves that one instance out

        def series_without_lost(*args, **kwargs):
            return [ds for ds in real_series(*args, **kwargs) if ds.SOPInstanceUID != lost]

        src._client.retrieve_series = series_without_lost
        with pytest.raises(PacsRetrieveError, match="1 of 5 slice") as err:
            src.fetch_series(study, uid, tmp_path / "dest")
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert lost in str(err.value) and "HTTP 500 after 2 attempts" in str(err.value)
    assert len(_FailingProxy.failed) == 2  # only the missing one, retried once (retries=1)
    assert len(list((tmp_path / "dest").glob("*.dcm"))) == 4


# ============================================================================ storing


def test_store_results_checks_first_and_sends_nothing_wrong(orthanc, multi_study, tmp_path):
    from mkunet.io.dicom_out import write_rtstruct, write_seg

    study, series = multi_study
    src = source(orthanc)
    vol = src.fetch_volume(study, series["thick"][0], tmp_path / "ct")
    mask = np.zeros(vol.shape, bool)
    mask[3:8, 4:9, 3:7] = True
    seg = write_seg(mask, vol, tmp_path / "out" / "seg.dcm")
    rt = write_rtstruct(mask, vol, tmp_path / "out" / "rtstruct.dcm")
    before = src.list_instances(study)
    other = read_volume(series["thin"][2][0].parent).with_array(vol.array, study_uid="1.2.3.4")
    with pytest.raises(PacsStoreError, match="is not the CT's study"):
        src.store_results([seg, rt], other)
    ct_file = series["thick"][2][0]
    with pytest.raises(PacsStoreError, match="neither SEG nor RTSTRUCT"):
        src.store_results([seg, ct_file], vol)
    assert len(src.list_instances(study)) == len(before)  # nothing half-written
    stored = src.store_results([seg, rt], vol)
    assert stored == {
        "seg.dcm": pydicom.dcmread(seg).SOPInstanceUID,
        "rtstruct.dcm": pydicom.dcmread(rt).SOPInstanceUID,
    }
    now = {i["sop_uid"]: i["modality"] for i in src.list_instances(study)}
    assert now[stored["seg.dcm"]] == "SEG" and now[stored["rtstruct.dcm"]] == "RTSTRUCT"


# ============================================================================ the round trip


def dciodvfy(path: Path) -> tuple[list[str], str]:
    result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    text = result.stdout + result.stderr
    return [x for x in text.splitlines() if x.startswith("Error")], text


def seg_mask(path: Path, reference) -> np.ndarray:
    """A SEG's segment 1 on the reference CT's slices, decoded by highdicom (not by mkunet)."""
    import highdicom as hd

    seg = hd.seg.segread(path)
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in reference.source]
    referenced = {str(u[2]) for u in seg.get_source_image_uids()}
    out = np.zeros(reference.shape, bool)
    present = [k for k, u in enumerate(uids) if u in referenced]
    pixels = seg.get_pixels_by_source_instance([uids[k] for k in present], segment_numbers=[1])
    out[present] = pixels[..., 0] > 0
    return out


@pytest.mark.slow  # two IBSI segmentations (~3-5 s each on 2 shared cores)
def test_round_trip_ibsi_segment_push_read_back(orthanc, shared_data, tmp_path):
    folder = shared_data / "ibsi" / "ct_phantom" / "dicom" / "image"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    files = sorted(folder.glob("*.dcm"))
    src = source(orthanc)
    uploaded = src.store(files)
    assert len(uploaded) == 60
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    seed = [str(v) for v in IBSI_SEED_XYZ]
    runner = CliRunner()
    local = runner.invoke(app, ["segment", str(folder), "--out", str(tmp_path / "local"), "--seed-point", *seed])
    assert local.exit_code == 0, local.output
    pacs = runner.invoke(
        app,
        ["segment", "--dicomweb", orthanc.dicomweb_url, "--study", study, "--out", str(tmp_path / "pacs")]
        + ["--seed-point", *seed, "--push", "--cache", str(tmp_path / "cache")],
    )
    assert pacs.exit_code == 0, pacs.output
    assert "60 slices of 3 mm" in pacs.output and "why:" in pacs.output
    pushed = dict(
        line.split(": SOP Instance UID ")[0].split()[-1:] + [line.split("SOP Instance UID ")[1].split()[0]]
        for line in pacs.output.splitlines()
        if line.startswith("pushed ")
    )
    assert set(pushed) == {"seg", "rtstruct"}

    # the study now holds the CT, the SEG and the RTSTRUCT
    listed = {i["sop_uid"]: i for i in src.list_instances(study)}
    assert listed[pushed["seg"]]["modality"] == "SEG" and listed[pushed["rtstruct"]]["modality"] == "RTSTRUCT"
    assert sum(i["modality"] == "CT" for i in listed.values()) == 60

    # read them back over WADO-RS and compare with the file-based result
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(orthanc.dicomweb_url)
    back = {}
    for kind, uid in pushed.items():
        ds = client.retrieve_instance(study, listed[uid]["series_uid"], uid)
        back[kind] = tmp_path / "back" / f"{kind}.dcm"
        back[kind].parent.mkdir(exist_ok=True)
        ds.save_as(back[kind], enforce_file_format=True)
    ct = read_volume(folder)
    local_mask = read_mask(tmp_path / "local" / "mask.nii.gz", ct)
    assert local_mask.sum() > 90_000  # the GTV: 125,256 voxels in the reference, 97,558 measured (0.78x)
    np.testing.assert_array_equal(read_mask(tmp_path / "pacs" / "mask.nii.gz", ct), local_mask)
    np.testing.assert_array_equal(seg_mask(back["seg"], ct), local_mask)
    np.testing.assert_array_equal(seg_mask(tmp_path / "local" / "seg.dcm", ct), local_mask)
    np.testing.assert_array_equal(
        read_rtstruct(back["rtstruct"], ct), read_rtstruct(tmp_path / "local" / "rtstruct.dcm", ct)
    )
    for kind in ("seg", "rtstruct"):  # same patient and study as the CT
        ds = pydicom.dcmread(back[kind])
        assert ds.StudyInstanceUID == study and ds.PatientID == ct.patient_id

    if DCIODVFY is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed: the objects were not validated")
    for kind, path in back.items():
        errors, text = dciodvfy(path)
        assert not errors, f"dciodvfy on the {kind} returned by Orthanc:\n{text}"


# ============================================================================ failures: auth, stopped, timeout, 5xx


def test_credentials_right_wrong_and_missing(orthanc_auth, tmp_path, monkeypatch):
    study = new_uid("auth")
    _, _, files = ct_series(tmp_path / "s", study_uid=study)
    user, password = next(iter(USERS.items()))
    monkeypatch.setenv(ENV_USER, user)
    monkeypatch.setenv(ENV_PASSWORD, password)
    src = DicomWebSource(orthanc_auth.dicomweb_url, timeout_s=10, retries=0)  # credentials from the environment
    src.store(files)
    assert src.find_ct_series(study).chosen.n_instances == 6

    monkeypatch.setenv(ENV_PASSWORD, "wrong-password")
    with pytest.raises(PacsAuthError, match=r"refused access \(HTTP 401\)") as err:
        DicomWebSource(orthanc_auth.dicomweb_url, timeout_s=10).find_ct_series(study)
    assert "wrong-password" not in str(err.value) and ENV_USER in str(err.value)
    monkeypatch.delenv(ENV_USER)
    monkeypatch.delenv(ENV_PASSWORD)
    with pytest.raises(PacsAuthError, match="with no credentials"):
        DicomWebSource(orthanc_auth.dicomweb_url, timeout_s=10).find_ct_series(study)

    # the command line: exit 2, one line naming the server and what to set; never the secret
    monkeypatch.setenv(ENV_USER, user)
    monkeypatch.setenv(ENV_PASSWORD, "wrong-password")
    res = CliRunner().invoke(
        app, ["segment", "--dicomweb", orthanc_auth.dicomweb_url, "--study", study, "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "HTTP 401" in res.output and "wrong-password" not in res.output
    assert not (tmp_path / "o").exists()


def test_stopped_server_fails_within_the_timeout(tmp_path):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    server = OrthancServer(tmp_path / "orthanc").start()
    server.stop()
    t0 = time.monotonic()
    with pytest.raises(PacsUnreachableError, match="cannot reach the DICOMweb server") as err:
        DicomWebSource(server.dicomweb_url, credentials=Credentials(), timeout_s=3.0).find_ct_series("1.2.3")
    assert time.monotonic() - t0 < 3.0
    assert server.dicomweb_url in str(err.value) and "running" in str(err.value)
    res = CliRunner().invoke(
        app, ["segment", "--dicomweb", server.dicomweb_url, "--study", "1.2.3", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "cannot reach" in res.output


def test_a_server_that_never_answers_times_out():
    with socket.socket() as listener:  # accepts connections (backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web"
        t0 = time.monotonic()
        with pytest.raises(PacsTimeoutError, match=r"did not answer within 0\.5 s"):
            DicomWebSource(url, credentials=Credentials(), timeout_s=0.5, retries=3).find_ct_series("1.2.3")
        assert time.monotonic() - t0 < 2.0  # a timeout is not retried


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers the scripted statuses in turn (then 200 with an empty DICOM JSON list); records requests."""

    script: list[int] = []
    seen: list[dict[str, str]] = []
    stow: list[tuple[int, dict | None]] = []  # STOW-RS answers: (status, DICOM JSON body or None)

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).seen.append(dict(self.headers))
        status = type(self).script.pop(0) if type(self).script else 200
        body = b"[]" if status == 200 else b"busy"
        self.send_response(status)
        self.send_header("Content-Type", "application/dicom+json" if status == 200 else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append(dict(self.headers))
        status, body = type(self).stow.pop(0)
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Scripted.script, _Scripted.seen, _Scripted.stow = [], [], []
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    server.shutdown()
    server.server_close()


def test_5xx_is_retried_with_backoff_then_reported(scripted_server):
    _Scripted.script = [503, 502]  # two failures, then an answer (no such study)
    t0 = time.monotonic()
    with pytest.raises(PacsNotFoundError):
        DicomWebSource(scripted_server, credentials=Credentials(), retries=2, backoff_s=0.1).search_series("1.2.3")
    assert len(_Scripted.seen) == 3 and time.monotonic() - t0 >= 0.1 + 0.2  # waited 0.1 s, then 0.2 s
    _Scripted.script, _Scripted.seen = [500, 500, 500], []
    with pytest.raises(PacsServerError, match=r"HTTP 500 after 3 attempts"):
        DicomWebSource(scripted_server, credentials=Credentials(), retries=2, backoff_s=0.01).search_series("1.2.3")
    assert len(_Scripted.seen) == 3


def test_bearer_token_is_sent_as_a_header(scripted_server, monkeypatch):
    monkeypatch.setenv(ENV_TOKEN, "tok-123")
    with pytest.raises(PacsNotFoundError):
        DicomWebSource(scripted_server).search_series("1.2.3")
    assert _Scripted.seen[-1]["Authorization"] == "Bearer tok-123"


# ============================================================================ credentials (no server)


def test_credentials_from_environment_and_config_file(tmp_path):
    assert credentials_from_env({}).kind == "none"
    c = credentials_from_env({ENV_USER: "u", ENV_PASSWORD: "p"})
    assert (c.kind, c.username, c.password) == ("basic", "u", "p") and "p" not in repr(c)
    assert credentials_from_env({ENV_TOKEN: "t"}).kind == "bearer"
    with pytest.raises(PacsError, match="lack the password"):
        credentials_from_env({ENV_USER: "u"})
    with pytest.raises(PacsError, match="both a token and a username"):
        credentials_from_env({ENV_USER: "u", ENV_PASSWORD: "p", ENV_TOKEN: "t"})
    cfg = tmp_path / "dicomweb.toml"
    cfg.write_text('username = "fileuser"\npassword = "filepass"\n')
    cfg.chmod(0o600)
    c = credentials_from_env({ENV_CONFIG: str(cfg)})
    assert (c.username, c.password) == ("fileuser", "filepass") and str(cfg) in c.source
    c = credentials_from_env({ENV_CONFIG: str(cfg), ENV_TOKEN: "t"})  # the environment wins
    assert c.kind == "bearer" and c.username is None
    cfg.chmod(0o644)
    with pytest.warns(UserWarning, match="chmod 600"):
        credentials_from_env({ENV_CONFIG: str(cfg)})
    cfg.write_text('user = "x"\n')
    with pytest.raises(PacsError, match=r"unknown key\(s\) \['user'\]"):
        credentials_from_env({ENV_CONFIG: str(cfg)})
    with pytest.raises(PacsError, match="not a file"):
        credentials_from_env({ENV_CONFIG: str(tmp_path / "none.toml")})


def test_credentials_over_plain_http_to_another_host_are_warned_about():
    creds = Credentials(username="u", password="p")
    with pytest.warns(UserWarning, match="clear text"):
        DicomWebSource("http://pacs.example.org/dicom-web", credentials=creds)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DicomWebSource("http://127.0.0.1:8042/dicom-web", credentials=creds)
        DicomWebSource("https://pacs.example.org/dicom-web", credentials=creds)
    with pytest.raises(PacsError, match="not http"):
        DicomWebSource("pacs.example.org/dicom-web", credentials=creds)


def test_cli_options_and_help():
    runner = CliRunner()
    text = runner.invoke(app, ["segment", "--help"], env={"COLUMNS": "250"}).output
    text = " ".join(text.replace("│", " ").split())
    assert "--dicomweb" in text and ENV_USER in text and ENV_TOKEN in text and ENV_CONFIG in text
    assert "Credentials are never command-line arguments" in text
    res = runner.invoke(app, ["segment", "--out", "o"])
    assert res.exit_code == 2 and "neither" in res.output
    res = runner.invoke(app, ["segment", "x", "--dicomweb", "http://127.0.0.1:1/dicom-web", "--out", "o"])
    assert res.exit_code == 2 and "not both" in res.output
    res = runner.invoke(app, ["segment", "x", "--push", "--out", "o"])
    assert res.exit_code == 2 and "only apply with --dicomweb" in res.output
    res = runner.invoke(app, ["segment", "--dicomweb", "http://127.0.0.1:1/dicom-web", "--out", "o"])
    assert res.exit_code == 2 and "needs --study" in res.output
    assert ENV_USER in runner.invoke(app, ["run", "--help"], env={"COLUMNS": "250"}).output


# ============================================================================ worklists and `mkunet run`


def test_read_worklist_errors_name_line_and_column(tmp_path):
    path = tmp_path / "wl.csv"
    path.write_text("patient_id,study_uid,scan_date\nP1,1.2.3,2024-01-10\nP1,1.2.4,20240310\n")
    wl = read_worklist(path)
    assert [(e.patient_id, e.study_uid, e.series_uid, e.scan_date, e.line) for e in wl] == [
        ("P1", "1.2.3", None, "2024-01-10", 2),
        ("P1", "1.2.4", None, "2024-03-10", 3),
    ]
    for body, message in [
        ("patient_id,study_uid\nP1,1.2.3\n", r"lacks column\(s\) \['scan_date'\]"),
        ("patient_id,study_uid,scan_date\nP1,1.2.x,2024-01-10\n", "line 2: study_uid '1.2.x' is not a DICOM UID"),
        ("patient_id,study_uid,scan_date\nP1,1.2.3,10/01/2024\n", "line 2.*is not a date"),
        ("patient_id,study_uid,scan_date\nP1,1.2.3,\n", "line 2: scan_date is empty"),
        ("patient_id,study_uid,scan_date\nP1,1.2.3,2024-01-10\nP1,1.2.3,2024-01-10\n", "line 3.*listed twice"),
    ]:
        path.write_text(body)
        with pytest.raises(ValueError, match=message):
            read_worklist(path)


@pytest.mark.slow  # two cohort runs (PACS and local folders): 6-14 s on 2 shared cores
def test_run_from_a_worklist_pushes_every_segmented_scan(orthanc, tmp_path):
    """The real default path (``--method auto``: detector, lesion model, tracking; no stand-in model)."""
    import pandas as pd

    from tests.run.test_pipeline import make_tiny_cohort, run

    cohort = make_tiny_cohort(tmp_path / "cohort", n_patients=1, n_timepoints=2, shape=(12, 32, 32))
    scans = pd.read_csv(cohort.root / "scans.csv", dtype={"patient_id": str})
    src = source(orthanc)
    rows = []
    for r in scans.to_dict("records"):
        files = sorted((cohort.root / r["dicom"]).glob("*.dcm"))
        src.store(files)
        head = pydicom.dcmread(files[0], stop_before_pixels=True)
        rows.append({"patient_id": r["patient_id"], "study_uid": head.StudyInstanceUID, "scan_date": r["scan_date"]})
    worklist = tmp_path / "worklist.csv"
    pd.DataFrame(rows).to_csv(worklist, index=False)

    res = CliRunner().invoke(
        app,
        ["run", "--dicomweb", orthanc.dicomweb_url, "--worklist", str(worklist), "--push", "--no-report"]
        + ["--clinical", str(cohort.root / "clinical.csv"), "--out", str(tmp_path / "out")],
    )
    assert res.exit_code == 0, res.output
    pushed = [line for line in res.output.splitlines() if line.startswith("pushed ")]
    assert len(pushed) == 4  # 2 scans x (SEG, RTSTRUCT)
    for row in rows:
        modalities = sorted(i["modality"] for i in src.list_instances(row["study_uid"]))
        assert modalities.count("SEG") == 1 and modalities.count("RTSTRUCT") == 1

    # the same cohort from its local folders: identical masks
    local = run(cohort, tmp_path / "local", None, method="auto")
    got = pd.read_csv(tmp_path / "out" / "results.csv", dtype={"patient_id": str})
    assert (got["status"] == "ok").all() and len(got) == 2
    for r in local.results.to_dict("records"):
        sub = Path("patients") / r["patient_id"] / f"T{r['timepoint']}" / "mask.nii.gz"
        ref = read_volume(r["input_path"])
        np.testing.assert_array_equal(read_mask(tmp_path / "out" / sub, ref), read_mask(tmp_path / "local" / sub, ref))
        # ...and they are the balls (measured: Dice 1.0 on both scans)
        truth = read_mask(cohort.root / r["patient_id"] / f"T{r['timepoint']}" / "mask.nii.gz", ref)
        mask = read_mask(tmp_path / "out" / sub, ref)
        assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) >= 0.98

    # a rerun resumes from the cache folder without retrieving again, and push_cohort is the same API
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "pacs_inputs").rglob("*.dcm")}
    entries = read_worklist(worklist)
    cohort_dir, chosen = fetch_worklist(src, entries, tmp_path / "out" / "pacs_inputs")
    assert {p: p.stat().st_mtime_ns for p in cohort_dir.rglob("*.dcm")} == before
    assert all(isinstance(c, SeriesChoice) for c in chosen)
    again = push_cohort(src, got, tmp_path / "out")  # the same SOP instances: no duplicates in the study
    assert len(again) == 4
    for row in rows:
        assert sorted(i["modality"] for i in src.list_instances(row["study_uid"])).count("SEG") == 1


def test_run_push_refuses_results_of_another_study(orthanc, tmp_path):
    import pandas as pd

    study = new_uid("cohort-bad")
    _, _, files = ct_series(tmp_path / "ct", study_uid=study)
    folder = tmp_path / "out" / "patients" / "P1" / "T0"
    folder.mkdir(parents=True)
    foreign = Volume(np.zeros((6, 12, 10), np.float32), spacing=(2.5, 0.8, 0.7))
    other = write_ct_series(foreign, tmp_path / "other", patient_id="PACS-1", uid_entropy=("other",))
    from mkunet.io.dicom_out import write_seg

    mask = np.zeros((6, 12, 10), bool)
    mask[2:4, 3:6, 3:6] = True
    write_seg(mask, read_volume(other[0].parent), folder / "seg.dcm")
    results = pd.DataFrame([{"patient_id": "P1", "timepoint": 0, "status": "ok", "input_path": str(files[0].parent)}])
    with pytest.raises(PacsStoreError, match="is not the CT's study"):
        push_cohort(source(orthanc), results, tmp_path / "out")


def test_worklist_scan_dates_become_the_cohort_days(orthanc, multi_study, tmp_path):
    study, series = multi_study
    wl = tmp_path / "wl.csv"
    wl.write_text(
        "patient_id,study_uid,series_uid,scan_date\n"
        f"P9,{study},{series['thick'][0]},2024-03-01\nP9,{study},{series['thin'][0]},2024-01-01\n"
    )
    cohort_dir, chosen = fetch_worklist(source(orthanc), read_worklist(wl), tmp_path / "cohort")
    from mkunet.run.inputs import discover_scans

    scans = discover_scans(cohort_dir)["P9"]
    assert [s.days for s in scans] == [0.0, 60.0]
    assert read_volume(scans[0].path).series_uid == series["thin"][0]  # 2024-01-01 first
    assert [c.series_uid for c in chosen] == [series["thick"][0], series["thin"][0]]  # type: ignore[union-attr]
    assert [s.scan_date for s in scans] == ["2024-01-01", "2024-03-01"]


def test_segment_push_without_dicom_outputs_stops_before_segmenting(orthanc, multi_study, tmp_path):
    study, series = multi_study
    res = CliRunner().invoke(
        app,
        ["segment", "--dicomweb", orthanc.dicomweb_url, "--study", study, "--series", series["thick"][0]]
        + ["--out", str(tmp_path / "o"), "--formats", "nifti", "--push", "--seed-point", "0", "0", "25"],
    )
    assert res.exit_code == 2 and "--formats nifti writes neither" in res.output
    assert not (tmp_path / "o").exists()


def test_stow_answers_partial_refusal_and_no_body(scripted_server, tmp_path):
    from mkunet.io.dicom_out import write_seg

    vol = read_volume(ct_series(tmp_path / "ct", study_uid=new_uid("stow"))[2][0].parent)
    mask = np.zeros(vol.shape, bool)
    mask[2:4, 3:6, 3:6] = True
    a = pydicom.dcmread(write_seg(mask, vol, tmp_path / "a.dcm"))
    b = pydicom.dcmread(write_seg(mask, vol, tmp_path / "b.dcm"))

    def ref(ds, reason=None):
        item = {"00081155": {"vr": "UI", "Value": [str(ds.SOPInstanceUID)]}}
        return item | ({"00081197": {"vr": "US", "Value": [reason]}} if reason else {})

    src = DicomWebSource(scripted_server, credentials=Credentials(), retries=0)
    _Scripted.stow = [
        (202, {"00081199": {"vr": "SQ", "Value": [ref(a)]}, "00081198": {"vr": "SQ", "Value": [ref(b, 272)]}})
    ]
    with pytest.raises(PacsStoreError, match="did not store 1 of 2") as err:
        src.store([a, b], study_uid=vol.study_uid)
    assert f"{b.SOPInstanceUID} (reason 272)" in str(err.value) and "delete them by hand" in str(err.value)
    _Scripted.stow = [(409, None)]
    with pytest.raises(PacsStoreError, match="HTTP 409") as err:
        src.store([a, b], study_uid=vol.study_uid)
    assert str(a.SOPInstanceUID) in str(err.value)
    _Scripted.stow = [(200, None)]  # no body: everything taken
    assert src.store([a, b], study_uid=vol.study_uid) == [a.SOPInstanceUID, b.SOPInstanceUID]


def test_stow_is_retried_by_the_session_and_sends_the_whole_body_again(scripted_server, tmp_path):
    from mkunet.io.dicom_out import write_seg

    vol = read_volume(ct_series(tmp_path / "ct", study_uid=new_uid("stow-retry"))[2][0].parent)
    mask = np.zeros(vol.shape, bool)
    mask[2:4, 3:6, 3:6] = True
    big = pydicom.dcmread(write_seg(mask, vol, tmp_path / "a.dcm"))
    big.PixelData = bytes(3_000_000)  # above dicomweb-client's 1 MB chunk size: still sent whole
    src = DicomWebSource(scripted_server, credentials=Credentials(), retries=2, backoff_s=0.01)
    _Scripted.stow = [(503, None), (429, None), (200, None)]
    assert src.store([big], study_uid=vol.study_uid) == [big.SOPInstanceUID]
    lengths = [int(h.get("Content-Length", 0)) for h in _Scripted.seen]
    assert len(lengths) == 3 and lengths[0] > 3_000_000 and len(set(lengths)) == 1
    _Scripted.stow, _Scripted.seen = [(503, None)] * 3, []
    with pytest.raises(PacsStoreError, match=r"HTTP 503 after 3 attempts"):
        src.store([big], study_uid=vol.study_uid)
    assert len(_Scripted.seen) == 3
