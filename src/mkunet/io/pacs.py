"""A PACS as input and output: pull a CT series over DICOMweb, push DICOM SEG and RTSTRUCT back.

:class:`DicomWebSource` speaks the standard DICOMweb REST API (QIDO-RS to search, WADO-RS to
retrieve, STOW-RS to store) through ``dicomweb-client``; it is tested against a real Orthanc
with its DICOMweb plugin. The series is retrieved into a folder (one file per slice, named
``<SOPInstanceUID>.dcm``) and then read exactly as a folder is (:func:`mkunet.io.read_volume`),
so a scan from a PACS and the same scan on disk give the same :class:`~mkunet.volume.Volume`
(array (z, y, x) float32 HU, spacing (z, y, x) mm) and the same masks.

Series choice (:meth:`DicomWebSource.find_ct_series`)
-----------------------------------------------------
Without a series UID the study's CT series is chosen by one documented rule:

1. only series whose instances are all single-frame CT images (Modality ``CT``, SOP class CT
   Image Storage) with one orientation and one image size are candidates; a series that mixes
   modalities, SOP classes, orientations or image sizes is skipped as *mixed*;
2. localisers are skipped (``ImageType`` contains ``LOCALIZER``), and so are series that are
   not axial (slice normal more than ~18 degrees from the patient's z axis, |n_z| < 0.95);
3. among the rest: the most slices, then the thinnest slices (``SliceThickness``, mm), then the
   lowest series UID (so the choice is reproducible).

:class:`SeriesChoice` lists every series of the study with the reason it was or was not taken.

Credentials (never a command-line argument)
-------------------------------------------
Read by :func:`credentials_from_env` from the environment: ``MKUNET_DICOMWEB_TOKEN`` (HTTP
bearer token) or ``MKUNET_DICOMWEB_USER`` + ``MKUNET_DICOMWEB_PASSWORD`` (HTTP basic), else
from a TOML file named by ``MKUNET_DICOMWEB_CONFIG`` with the keys ``token`` or ``username`` +
``password`` (and optionally ``ca_bundle``, a CA certificate file for TLS; the environment
variable ``MKUNET_DICOMWEB_CA_BUNDLE`` does the same). A config file that others can read is
warned about (``chmod 600`` it); credentials sent over plain ``http://`` to a host other than
the loopback are warned about (use ``https://``).

Failures
--------
Every failure is a :class:`PacsError` (a ``ValueError``) whose message names the server URL,
the study / series / instance and what to do: :class:`PacsUnreachableError` (connection
refused, unknown host), :class:`PacsTimeoutError` (no answer within ``timeout_s``),
:class:`PacsAuthError` (HTTP 401 / 403), :class:`PacsNotFoundError` (no such study or series),
:class:`PacsSeriesError` (no CT in the study, a series that is not CT or is mixed),
:class:`PacsRetrieveError` (a slice the server lists but cannot deliver),
:class:`PacsServerError` (5xx after the retries, or an answer that is not DICOMweb) and
:class:`PacsStoreError` (STOW-RS refused an object). HTTP 5xx and 429 answers are retried
``retries`` times with exponential back-off (``backoff_s``, then 2x, 4x, ...); refused
connections and timeouts are not retried, so they are reported within ``timeout_s``.

Nothing half-written in the PACS: :meth:`DicomWebSource.store_results` takes files already
written and validated locally (:func:`check_results`: readable, SEG or RTSTRUCT, in the target
study, same patient) and sends them in one STOW-RS request; an object the server refuses
raises :class:`PacsStoreError` naming what was stored and what was not.

Worklists (:func:`read_worklist`, :func:`fetch_worklist`)
--------------------------------------------------------
``mkunet run --dicomweb URL --worklist worklist.csv`` reads one row per scan (``patient_id,
study_uid[, series_uid], scan_date``), retrieves every series into a cohort folder in the
``scans.csv`` layout of :func:`mkunet.run.inputs.discover_scans` and runs
:func:`mkunet.run.pipeline.run_cohort` on it.

The retrieved files and the SEG / RTSTRUCT carry the patient's identity (name, ID, birth
date): keep the cache and output folders where patient data may be kept.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import os
import stat
import time
import tomllib
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from mkunet.volume import Volume

__all__ = [
    "ENV_USER",
    "ENV_PASSWORD",
    "ENV_TOKEN",
    "ENV_CONFIG",
    "ENV_CA_BUNDLE",
    "CREDENTIALS_HELP",
    "PacsError",
    "PacsUnreachableError",
    "PacsTimeoutError",
    "PacsAuthError",
    "PacsNotFoundError",
    "PacsSeriesError",
    "PacsRetrieveError",
    "PacsServerError",
    "PacsStoreError",
    "Credentials",
    "credentials_from_env",
    "SeriesSummary",
    "SeriesChoice",
    "DicomWebSource",
    "check_results",
    "open_series",
    "push_cohort",
    "WorklistEntry",
    "WORKLIST_COLUMNS",
    "read_worklist",
    "fetch_worklist",
]

ENV_USER = "MKUNET_DICOMWEB_USER"
ENV_PASSWORD = "MKUNET_DICOMWEB_PASSWORD"
ENV_TOKEN = "MKUNET_DICOMWEB_TOKEN"
ENV_CONFIG = "MKUNET_DICOMWEB_CONFIG"
ENV_CA_BUNDLE = "MKUNET_DICOMWEB_CA_BUNDLE"

CREDENTIALS_HELP = (
    f"Credentials are never given on the command line: set {ENV_TOKEN} (bearer token) or {ENV_USER} and "
    f"{ENV_PASSWORD} (HTTP basic) in the environment, or {ENV_CONFIG}=path/to/file.toml holding token = ... or "
    f"username = ... and password = ... (chmod 600). {ENV_CA_BUNDLE} names a CA certificate file for https."
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
_RESULT_CLASSES = {SEG_STORAGE: "SEG", RTSTRUCT_STORAGE: "RTSTRUCT"}
AXIAL_MIN_NZ = 0.95
"""A series is axial when its slice normal's z component satisfies |n_z| >= this (about 18 degrees)."""

# DICOM JSON tags (QIDO-RS / WADO-RS metadata)
_T_SOP_CLASS = "00080016"
_T_SOP_UID = "00080018"
_T_MODALITY = "00080060"
_T_IMAGE_TYPE = "00080008"
_T_SERIES_DESCRIPTION = "0008103E"
_T_SERIES_UID = "0020000E"
_T_STUDY_UID = "0020000D"
_T_PATIENT_ID = "00100020"
_T_SERIES_NUMBER = "00200011"
_T_N_INSTANCES = "00201209"
_T_ORIENTATION = "00200037"
_T_THICKNESS = "00180050"
_T_ROWS = "00280010"
_T_COLUMNS = "00280011"
_T_NUMBER_OF_FRAMES = "00280008"


# ============================================================================ errors


class PacsError(ValueError):
    """A PACS (DICOMweb) operation failed; the message names the server, the object and what to do."""


class PacsUnreachableError(PacsError):
    """The server cannot be reached (connection refused, unknown host, TLS failure)."""


class PacsTimeoutError(PacsError):
    """The server did not answer within the timeout."""


class PacsAuthError(PacsError):
    """The server refused the credentials (HTTP 401) or the access (HTTP 403)."""


class PacsNotFoundError(PacsError):
    """The study or series does not exist on the server."""


class PacsSeriesError(PacsError):
    """No usable CT: the study has no CT series, or the series is not CT or is mixed."""


class PacsRetrieveError(PacsError):
    """A slice the server lists cannot be retrieved."""


class PacsServerError(PacsError):
    """The server failed (HTTP 5xx after the retries) or did not answer as a DICOMweb server."""


class PacsStoreError(PacsError):
    """STOW-RS did not store an object (or the objects to store are not valid)."""


# ============================================================================ credentials


@dataclass(frozen=True)
class Credentials:
    """HTTP credentials for a DICOMweb server (never printed: ``repr`` hides the secrets).

    Attributes:
        username, password: HTTP basic authentication.
        token: HTTP bearer token (instead of username / password).
        ca_bundle: CA certificate file to verify the server's TLS certificate (None: the system's).
        source: where they were read from (for messages).
    """

    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    ca_bundle: Path | None = None
    source: str = ""

    @property
    def kind(self) -> str:
        """``"bearer"``, ``"basic"`` or ``"none"``."""
        return "bearer" if self.token else ("basic" if self.username else "none")


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PacsError(f"{ENV_CONFIG} names '{path}', which is not a file; fix the path or unset {ENV_CONFIG}.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise PacsError(
            f"DICOMweb config file '{path}' is not valid TOML ({err}); write e.g. username = \"...\" and "
            'password = "..." (or token = "...").'
        ) from err
    known = {"username", "password", "token", "ca_bundle"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PacsError(f"DICOMweb config file '{path}' has unknown key(s) {unknown}; known keys: {sorted(known)}.")
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(
            f"DICOMweb config file '{path}' holds credentials and can be read by other users; run chmod 600 on it.",
            UserWarning,
            stacklevel=3,
        )
    return {k: str(v) for k, v in data.items()}


def credentials_from_env(environ: Mapping[str, str] | None = None) -> Credentials:
    """The DICOMweb credentials from the environment or the config file it names.

    Order: ``MKUNET_DICOMWEB_TOKEN``, else ``MKUNET_DICOMWEB_USER`` + ``MKUNET_DICOMWEB_PASSWORD``,
    else the TOML file named by ``MKUNET_DICOMWEB_CONFIG`` (keys ``token`` or ``username`` +
    ``password``, optional ``ca_bundle``); none of them: no authentication.

    Raises:
        PacsError: a user without a password (or the reverse), both a token and a user, an
            unreadable config file or an unknown key in it.
    """
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    source = "environment"
    if env.get(ENV_CONFIG):
        path = Path(env[ENV_CONFIG]).expanduser()
        values = _read_config(path)
        source = f"config file '{path}'"
    from_env = {"token": env.get(ENV_TOKEN), "username": env.get(ENV_USER), "password": env.get(ENV_PASSWORD)}
    if any(from_env.values()):  # the environment overrides the file
        values = {k: v for k, v in from_env.items() if v} | (
            {"ca_bundle": values["ca_bundle"]} if "ca_bundle" in values else {}
        )
        source = "environment"
    if env.get(ENV_CA_BUNDLE):
        values["ca_bundle"] = env[ENV_CA_BUNDLE]
    token, user, password = values.get("token"), values.get("username"), values.get("password")
    if token and (user or password):
        raise PacsError(
            f"DICOMweb credentials from the {source} give both a token and a username/password; keep one "
            f"({ENV_TOKEN}, or {ENV_USER} + {ENV_PASSWORD})."
        )
    if bool(user) != bool(password):
        missing = "password" if user else "username"
        raise PacsError(
            f"DICOMweb credentials from the {source} lack the {missing}; set both {ENV_USER} and {ENV_PASSWORD} "
            f"(or username and password in the {ENV_CONFIG} file)."
        )
    ca = values.get("ca_bundle")
    if ca and not Path(ca).expanduser().is_file():
        raise PacsError(f"The CA bundle '{ca}' (from the {source}) is not a file; fix the path.")
    return Credentials(user, password, token, Path(ca).expanduser() if ca else None, source)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ============================================================================ series


@dataclass(frozen=True)
class SeriesSummary:
    """One series of a study as the series choice sees it.

    Attributes:
        series_uid: SeriesInstanceUID.
        modality: Modality ("CT", "MR", "SEG", ...; several joined by "/" when mixed).
        description: SeriesDescription ("" when absent).
        series_number: SeriesNumber (None when absent).
        n_instances: number of instances (slices for a CT series).
        slice_thickness_mm: SliceThickness (mm) when known and the same for every slice.
        axial: True when the slice normal is within ~18 degrees of the patient's z axis (None: unknown).
        localizer: ImageType contains LOCALIZER.
        problem: why the series is not a usable CT series ("" when it is).
    """

    series_uid: str
    modality: str
    description: str = ""
    series_number: int | None = None
    n_instances: int = 0
    slice_thickness_mm: float | None = None
    axial: bool | None = None
    localizer: bool = False
    problem: str = ""

    @property
    def usable(self) -> bool:
        """A candidate of the series choice (no problem)."""
        return not self.problem

    def describe(self) -> str:
        """One line: number, description, modality, slices, thickness and the problem if any."""
        name = f"series {self.series_number} " if self.series_number is not None else "series "
        name += f"{self.description!r} " if self.description else ""
        thick = f" of {self.slice_thickness_mm:g} mm" if self.slice_thickness_mm else ""
        text = f"{name}({self.series_uid}): {self.modality or '?'}, {self.n_instances} instance(s){thick}"
        return text + (f" -- skipped: {self.problem}" if self.problem else "")


@dataclass(frozen=True)
class SeriesChoice:
    """The series chosen in a study, every series seen, and why.

    Attributes:
        study_uid: the study.
        series: every series of the study (:class:`SeriesSummary`), in the server's order.
        chosen: the chosen series.
        reason: one sentence: why this one.
    """

    study_uid: str
    series: tuple[SeriesSummary, ...]
    chosen: SeriesSummary
    reason: str

    def describe(self) -> str:
        """Several lines: the choice and its reason, then every series with why it was skipped."""
        lines = [f"chosen: {self.chosen.describe()}", f"why: {self.reason}"]
        lines += [f"  {s.describe()}" for s in self.series if s.series_uid != self.chosen.series_uid]
        return "\n".join(lines)


def _value(item: Mapping[str, Any], tag: str) -> Any:
    """The first value of ``tag`` in a DICOM JSON object (None when absent)."""
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def _values(item: Mapping[str, Any], tag: str) -> list[Any]:
    return list((item.get(tag) or {}).get("Value") or [])


def _number(value: Any, kind: type = float) -> Any:
    """``kind(value)``, or None when the value is missing or not a number."""
    try:
        return None if value in (None, "") else kind(value)
    except (TypeError, ValueError):
        return None


def _series_line(record: Mapping[str, Any]) -> str:
    """One line for a QIDO-RS series record: number, description, UID, modality, instances."""
    number = _value(record, _T_SERIES_NUMBER)
    description = _value(record, _T_SERIES_DESCRIPTION)
    return (
        f"series {number if number is not None else '?'} {description or ''!r} ({_value(record, _T_SERIES_UID)}): "
        f"{_value(record, _T_MODALITY) or '?'}, {_value(record, _T_N_INSTANCES) or '?'} instance(s)"
    )


def _same_orientation(a: Sequence[float], b: Sequence[float], atol: float = 1e-3) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= atol for x, y in zip(a, b, strict=True))


def _summarise_series(summary: Mapping[str, Any], metadata: Sequence[Mapping[str, Any]] | None) -> SeriesSummary:
    """A :class:`SeriesSummary` from the QIDO-RS series record and (CT only) the instances' metadata."""
    uid = str(_value(summary, _T_SERIES_UID) or "")
    modality = str(_value(summary, _T_MODALITY) or "")
    description = str(_value(summary, _T_SERIES_DESCRIPTION) or "")
    series_number = _number(_value(summary, _T_SERIES_NUMBER), int)
    n_instances = _number(_value(summary, _T_N_INSTANCES), int) or 0
    if metadata is None:
        return SeriesSummary(
            modality=modality,
            n_instances=n_instances,
            problem=f"modality {modality or '?'}, not CT",
            series_uid=uid,
            description=description,
            series_number=series_number,
        )
    if not metadata:
        return SeriesSummary(
            modality=modality,
            n_instances=0,
            problem="no instance",
            series_uid=uid,
            description=description,
            series_number=series_number,
        )
    modalities = sorted({str(_value(m, _T_MODALITY) or "?") for m in metadata})
    classes = sorted({str(_value(m, _T_SOP_CLASS) or "?") for m in metadata})
    orientations: list[tuple[float, ...]] = []  # distinct within 1e-3
    for m in metadata:
        iop = tuple(_number(v) for v in _values(m, _T_ORIENTATION))
        iop = iop if len(iop) == 6 and None not in iop else ()
        if not any(_same_orientation(iop, o) for o in orientations):
            orientations.append(iop)  # type: ignore[arg-type]
    sizes = {(_value(m, _T_ROWS), _value(m, _T_COLUMNS)) for m in metadata}
    thicknesses = {_number(_value(m, _T_THICKNESS)) for m in metadata}
    localizer = any("LOCALIZER" in [str(v).upper() for v in _values(m, _T_IMAGE_TYPE)] for m in metadata)
    multiframe = any((_number(_value(m, _T_NUMBER_OF_FRAMES), int) or 1) > 1 for m in metadata)
    thickness = next(iter(thicknesses)) if len(thicknesses) == 1 else None
    axial = None
    if len(orientations) == 1:
        iop = orientations[0]
        if len(iop) == 6:
            r, c = iop[:3], iop[3:]
            nz = r[0] * c[1] - r[1] * c[0]
            norm = math.sqrt(sum(v * v for v in r) * sum(v * v for v in c)) or 1.0
            axial = abs(nz) / norm >= AXIAL_MIN_NZ
    problem = ""
    if len(modalities) > 1 or len(classes) > 1:
        problem = f"mixed series (modalities {'/'.join(modalities)}, SOP classes {', '.join(classes)})"
    elif modalities != ["CT"]:
        problem = f"modality {modalities[0]}, not CT"
    elif classes != [CT_IMAGE_STORAGE] or multiframe:
        problem = f"SOP class {classes[0]} is not single-frame CT Image Storage ({CT_IMAGE_STORAGE})"
    elif len(orientations) > 1:
        problem = f"mixed series ({len(orientations)} different image orientations)"
    elif len(sizes) > 1:
        problem = f"mixed series ({len(sizes)} different image sizes)"
    elif localizer:
        problem = "localizer (ImageType LOCALIZER)"
    elif axial is None:
        problem = "no ImageOrientationPatient"
    elif not axial:
        problem = "not axial"
    return SeriesSummary(
        modality="/".join(modalities),
        n_instances=len(metadata),
        slice_thickness_mm=thickness,
        axial=axial,
        localizer=localizer,
        problem=problem,
        series_uid=uid,
        description=description,
        series_number=series_number,
    )


def _choose(study_uid: str, series: Sequence[SeriesSummary], where: str) -> SeriesChoice:
    candidates = [s for s in series if s.usable]
    if not candidates:
        listing = "\n".join(f"  {s.describe()}" for s in series) or "  (none)"
        raise PacsSeriesError(
            f"Study {study_uid} on {where} has no usable CT series (axial, single-frame CT images, not a "
            f"localizer, not mixed). Series found:\n{listing}\nCheck the study UID, or give --series for a series "
            "that mkunet can read."
        )

    def key(s: SeriesSummary) -> tuple[int, float, str]:
        return (-s.n_instances, s.slice_thickness_mm if s.slice_thickness_mm else math.inf, s.series_uid)

    ranked = sorted(candidates, key=key)
    best = ranked[0]
    thick = f"{best.slice_thickness_mm:g} mm" if best.slice_thickness_mm else "unknown thickness"
    reason = f"axial CT with {best.n_instances} slices of {thick}"
    if len(ranked) == 1:
        reason += "; the only usable CT series of the study"
    else:
        same_n = [s for s in ranked[1:] if s.n_instances == best.n_instances]
        reason += "; the most slices of the " + str(len(ranked)) + " usable CT series"
        if same_n:
            reason += ", and the thinnest among those with as many"
    skipped = [s for s in series if not s.usable]
    if skipped:
        reason += (
            "; skipped: "
            + "; ".join(f"{s.description or s.series_uid} ({s.problem})" for s in skipped[:6])
            + (f"; and {len(skipped) - 6} more" if len(skipped) > 6 else "")
        )
    return SeriesChoice(study_uid, tuple(series), best, reason + ".")


# ============================================================================ the source

_T = TypeVar("_T")


class DicomWebSource:
    """A DICOMweb server (QIDO-RS, WADO-RS, STOW-RS) as a source of CT series and a store of results.

    Args:
        url: the DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web`` (Orthanc) or
            ``https://pacs.example.org/dicomweb``.
        credentials: :class:`Credentials`; default :func:`credentials_from_env` (never from the CLI).
        timeout_s: per request, the longest wait for a connection or for the next bytes (s).
        retries: how many times an HTTP 5xx / 429 answer is retried (0: no retry).
        backoff_s: wait before the first retry (s); doubles at every retry.

    Raises:
        PacsError: a URL that is not http(s)://host[:port][/path], a bad timeout / retry setting,
            bad credentials settings (see :func:`credentials_from_env`).
    """

    def __init__(
        self,
        url: str,
        *,
        credentials: Credentials | None = None,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 1.0,
    ) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise PacsError(
                f"DICOMweb URL {url!r} is not http(s)://host[:port]/path; give the server's DICOMweb root, e.g. "
                "http://127.0.0.1:8042/dicom-web for a local Orthanc."
            )
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise PacsError(f"The DICOMweb timeout must be a positive number of seconds, got {timeout_s!r}.")
        if retries < 0 or backoff_s < 0:
            raise PacsError(f"retries and backoff_s must be >= 0, got {retries!r} and {backoff_s!r}.")
        self.url = url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.credentials = credentials_from_env() if credentials is None else credentials
        creds = self.credentials
        if creds.kind != "none" and parsed.scheme == "http" and not _is_loopback(parsed.hostname):
            warnings.warn(
                f"Credentials are sent in clear text to {self.url} (http, not https): use an https:// URL for any "
                "server that is not on this machine.",
                UserWarning,
                stacklevel=2,
            )
        session = requests.Session()
        headers: dict[str, str] = {}
        if creds.token:
            headers["Authorization"] = f"Bearer {creds.token}"
        elif creds.username:
            session.auth = (creds.username, creds.password or "")
        if creds.ca_bundle is not None:
            session.verify = str(creds.ca_bundle)
        self._client = DICOMwebClient(self.url, session=session, headers=headers or None, timeout=self.timeout_s)
        self._client.set_http_retry_params(retry=False)  # retries (5xx only) are done by _call

    def __repr__(self) -> str:
        return f"DicomWebSource({self.url!r}, auth={self.credentials.kind}, timeout_s={self.timeout_s:g})"

    # ------------------------------------------------------------------ HTTP with errors and retries
    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        """Run one client call: retry HTTP 5xx / 429, turn every failure into a :class:`PacsError`."""
        import requests

        attempt = 0
        while True:
            try:
                return fn()
            except requests.HTTPError as err:
                status = err.response.status_code if err.response is not None else None
                if status in (401, 403):
                    creds = self.credentials
                    given = (
                        f"the {creds.kind} credentials from the {creds.source}"
                        if creds.kind != "none"
                        else "no credentials"
                    )
                    raise PacsAuthError(
                        f"{what}: {self.url} refused access (HTTP {status}) with {given}. "
                        + (
                            "Check the user name and password or token, and that this user may read and write "
                            "the study. "
                            if status == 403 or creds.kind != "none"
                            else ""
                        )
                        + CREDENTIALS_HELP
                    ) from err
                if status is not None and (status >= 500 or status == 429) and attempt < self.retries:
                    time.sleep(self.backoff_s * 2**attempt)
                    attempt += 1
                    continue
                if status == 404:
                    raise PacsNotFoundError(
                        f"{what}: not found on {self.url} (HTTP 404). Check the UIDs, and that the URL is the "
                        "server's DICOMweb root (Orthanc: http://host:8042/dicom-web)."
                    ) from err
                tries = f" after {attempt + 1} attempts" if attempt else ""
                raise PacsServerError(
                    f"{what}: {self.url} answered HTTP {status}{tries} ({_reason(err)}). Check the server's log; "
                    "retry later (the number of retries and the back-off are configurable)."
                ) from err
            except requests.Timeout as err:
                raise PacsTimeoutError(
                    f"{what}: {self.url} did not answer within {self.timeout_s:g} s. Check that the server is up "
                    "and not overloaded, or allow more time (--timeout / timeout_s)."
                ) from err
            except requests.ConnectionError as err:
                raise PacsUnreachableError(
                    f"{what}: cannot reach the DICOMweb server at {self.url} ({_reason(err)}). Check the URL (the "
                    "DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web for Orthanc), that the server is running, "
                    "and the network / TLS settings."
                ) from err
            except requests.RequestException as err:
                raise PacsServerError(f"{what}: request to {self.url} failed ({_reason(err)}).") from err
            except ValueError as err:  # not DICOMweb: unexpected media type, not JSON, bad multipart
                if isinstance(err, PacsError):
                    raise
                raise PacsServerError(
                    f"{what}: the answer of {self.url} is not a DICOMweb answer ({err}). Check that the URL is the "
                    "server's DICOMweb root (Orthanc: http://host:8042/dicom-web)."
                ) from err

    # ------------------------------------------------------------------ queries
    def search_series(self, study_uid: str) -> list[dict[str, Any]]:
        """QIDO-RS: the series of a study (DICOM JSON records).

        Raises:
            PacsNotFoundError: no such study on the server (no series).
        """
        study_uid = _check_uid(study_uid, "study")
        found = self._call(
            f"Searching the series of study {study_uid}",
            lambda: self._client.search_for_series(
                study_uid,
                fields=["SeriesDescription", "SeriesNumber", "Modality", "NumberOfSeriesRelatedInstances"],
            ),
        )
        if not found:
            raise PacsNotFoundError(
                f"Study {study_uid} was not found on {self.url} (no series). Check the StudyInstanceUID, and that "
                "the study was sent to this PACS."
            )
        return list(found)

    def list_instances(self, study_uid: str, series_uid: str | None = None) -> list[dict[str, str]]:
        """QIDO-RS: the instances of a study (or of one series) as dicts with ``sop_uid``, ``sop_class``,
        ``series_uid`` and ``modality``."""
        study_uid = _check_uid(study_uid, "study")
        where = f"study {study_uid}" + (f", series {series_uid}" if series_uid else "")
        found = self._call(
            f"Listing the instances of {where}",
            lambda: self._client.search_for_instances(study_uid, series_uid),
        )
        return [
            {
                "sop_uid": str(_value(r, _T_SOP_UID) or ""),
                "sop_class": str(_value(r, _T_SOP_CLASS) or ""),
                "series_uid": str(_value(r, _T_SERIES_UID) or series_uid or ""),
                "modality": str(_value(r, _T_MODALITY) or ""),
            }
            for r in found
        ]

    def _summary(self, study_uid: str, record: Mapping[str, Any]) -> SeriesSummary:
        uid = str(_value(record, _T_SERIES_UID) or "")
        if str(_value(record, _T_MODALITY) or "") != "CT":
            return _summarise_series(record, None)
        try:
            metadata = self._call(
                f"Retrieving the metadata of study {study_uid}, series {uid}",
                lambda: self._client.retrieve_series_metadata(study_uid, uid),
            )
        except (PacsServerError, PacsNotFoundError) as err:  # this series only: the others may do
            summary = _summarise_series(record, None)
            return dataclasses.replace(summary, problem=f"its metadata cannot be retrieved ({_reason(err)})")
        return _summarise_series(record, metadata)

    def find_ct_series(self, study_uid: str) -> SeriesChoice:
        """Choose the CT series of a study (rule: module docstring) and say why.

        Raises:
            PacsNotFoundError: no such study.
            PacsSeriesError: no usable CT series (the message lists every series and why it was skipped).
        """
        records = self.search_series(study_uid)
        series = [self._summary(study_uid, r) for r in records]
        return _choose(study_uid, series, self.url)

    def check_series(self, study_uid: str, series_uid: str) -> SeriesSummary:
        """The given series, checked: it must be a usable CT series (not another modality, not mixed).

        Raises:
            PacsNotFoundError: no such study or series.
            PacsSeriesError: the series is not a usable CT series (the message says why).
        """
        records = self.search_series(study_uid)
        chosen = [r for r in records if _value(r, _T_SERIES_UID) == series_uid]
        if not chosen:
            listing = "\n".join(f"  {_series_line(r)}" for r in records)
            raise PacsNotFoundError(
                f"Series {series_uid} is not in study {study_uid} on {self.url}. Series of the study:\n{listing}\n"
                "Leave out --series to let mkunet choose the CT series, or check the SeriesInstanceUID."
            )
        summary = self._summary(study_uid, chosen[0])
        if not summary.usable:
            raise PacsSeriesError(
                f"Series {series_uid} of study {study_uid} on {self.url} cannot be segmented: {summary.problem}. "
                "mkunet reads one axial CT image series; leave out --series to let it choose the study's CT series."
            )
        return summary

    # ------------------------------------------------------------------ retrieval
    def fetch_series(self, study_uid: str, series_uid: str, dest: str | Path) -> Path:
        """WADO-RS: retrieve every instance of a series into ``dest`` (``<SOPInstanceUID>.dcm``, one per slice).

        The instances are listed first (QIDO-RS); files already in ``dest`` under their SOP Instance
        UID are kept (a cache) and ``.dcm`` files of instances the server no longer lists are
        removed, so ``dest`` holds exactly the series. The series is retrieved in one request;
        instances still missing are retrieved one by one, and any that fails is named. When the
        server cannot list the instances, the whole series is retrieved and its count checked
        against the series' NumberOfSeriesRelatedInstances. Each file is written under a temporary
        name and renamed. Read the folder with :func:`mkunet.io.read_volume`.

        Returns:
            ``dest``.

        Raises:
            PacsNotFoundError: no such study or series.
            PacsRetrieveError: an instance the server lists cannot be retrieved (named), or fewer
                instances than the series has.
            PacsError: unreachable server, timeout, authentication (see the class docstring).
        """
        import pydicom

        study_uid = _check_uid(study_uid, "study")
        series_uid = _check_uid(series_uid, "series")
        dest = Path(dest)
        where = f"study {study_uid}, series {series_uid}"
        records = [r for r in self.search_series(study_uid) if _value(r, _T_SERIES_UID) == series_uid]
        if not records:
            raise PacsNotFoundError(
                f"Series {series_uid} is not in study {study_uid} on {self.url}; check the SeriesInstanceUID "
                "(or leave out --series to let mkunet choose)."
            )
        count = _value(records[0], _T_N_INSTANCES)
        n_series = int(count) if count not in (None, "") else None
        expected: set[str] | None
        listing_error: PacsError | None = None
        try:
            expected = {i["sop_uid"] for i in self.list_instances(study_uid, series_uid)}
        except (PacsServerError, PacsNotFoundError) as err:  # some servers read every file to list them
            expected, listing_error = None, err
        if expected is not None and not expected:
            raise PacsNotFoundError(f"Series {series_uid} of study {study_uid} has no instance on {self.url}.")
        dest.mkdir(parents=True, exist_ok=True)
        received: set[str] = set()

        def save(ds: Any) -> None:
            uid = str(ds.get("SOPInstanceUID", ""))
            if not _is_uid(uid) or str(ds.get("SeriesInstanceUID", "")) != series_uid:
                return  # not one of ours: ignore
            if expected is not None and uid not in expected:
                return
            tmp = dest / f".{uid}.dcm.part"
            ds.save_as(tmp, enforce_file_format=True)
            tmp.replace(dest / f"{uid}.dcm")
            received.add(uid)

        def retrieve_all() -> PacsError | None:
            try:
                for ds in self._call(
                    f"Retrieving {where}", lambda: self._client.retrieve_series(study_uid, series_uid)
                ):
                    save(ds)
            except (PacsServerError, PacsNotFoundError, PacsRetrieveError) as err:
                return err  # one bad instance can fail the whole request
            return None

        if expected is None:
            error = retrieve_all()
            if n_series is None or len(received) < n_series or error is not None:
                raise PacsRetrieveError(
                    f"{where}: {self.url} delivered {len(received)} of "
                    f"{n_series if n_series is not None else 'an unknown number of'} slice(s) and cannot list the "
                    f"others ({listing_error}"
                    + (f"; {error}" if error is not None else "")
                    + "). Check the series on the server (or resend it), or choose another series with --series."
                )
            for stale in dest.glob("*.dcm"):
                if stale.stem not in received and _is_uid(stale.stem):
                    stale.unlink()
            return dest

        bad = sorted(u for u in expected if not _is_uid(u))
        if bad:
            raise PacsRetrieveError(f"Series {series_uid} on {self.url} lists invalid SOP Instance UIDs {bad[:3]}.")
        for stale in dest.glob("*.dcm"):
            if stale.stem not in expected and _is_uid(stale.stem):
                stale.unlink()
        missing = sorted(u for u in expected if not (dest / f"{u}.dcm").is_file())
        if len(missing) == len(expected):  # nothing cached: the whole series in one request
            retrieve_all()
            missing = sorted(u for u in expected if not (dest / f"{u}.dcm").is_file())
        failures: list[str] = []
        for uid in missing:
            try:
                ds = self._call(
                    f"Retrieving instance {uid} of {where}",
                    functools.partial(self._client.retrieve_instance, study_uid, series_uid, uid),
                )
            except (PacsServerError, PacsNotFoundError) as err:
                failures.append(f"{uid} ({err})")
                continue
            if not isinstance(ds, pydicom.Dataset) or str(ds.get("SOPInstanceUID", "")) != uid:
                failures.append(f"{uid} (the server sent another object)")
                continue
            save(ds)
        if failures:
            raise PacsRetrieveError(
                f"{len(failures)} of {len(expected)} slice(s) of {where} could not be retrieved from {self.url}: "
                + "; ".join(failures[:3])
                + (f"; and {len(failures) - 3} more" if len(failures) > 3 else "")
                + ". The PACS lists them but cannot deliver them: check these instances on the server (or resend "
                "the series to it), or choose another series with --series."
            )
        return dest

    def fetch_volume(self, study_uid: str, series_uid: str, dest: str | Path) -> Volume:
        """:meth:`fetch_series` into ``dest``, then :func:`mkunet.io.read_volume` of that folder.

        Returns:
            the CT volume: array (z, y, x) float32 HU, spacing (z, y, x) mm; ``source`` = the files in ``dest``.
        """
        from mkunet.io import read_volume

        return read_volume(self.fetch_series(study_uid, series_uid, dest), series_uid=series_uid)

    # ------------------------------------------------------------------ storage
    def store(self, datasets: Iterable[Any], study_uid: str | None = None) -> list[str]:
        """STOW-RS: store DICOM datasets (``pydicom.Dataset`` or file paths) in one request.

        Prefer :meth:`store_results` for SEG / RTSTRUCT, which validates them first.

        Returns:
            the SOP Instance UIDs the server stored, in the order given.

        Raises:
            PacsStoreError: the server refused one or more objects (the message says which were
                stored and which not), or a file cannot be read.
            PacsError: unreachable, timeout, authentication.
        """
        import pydicom

        items = []
        for item in datasets:
            if isinstance(item, pydicom.Dataset):
                items.append(item)
                continue
            try:
                items.append(pydicom.dcmread(item))
            except (OSError, pydicom.errors.InvalidDicomError) as err:
                raise PacsStoreError(f"Cannot read '{item}' to store it ({err}); nothing was sent.") from err
        if not items:
            return []
        uids = [str(ds.SOPInstanceUID) for ds in items]
        study = study_uid or str(items[0].StudyInstanceUID)
        try:
            result = self._call(
                f"Storing {len(items)} object(s) in study {study}",
                lambda: self._client.store_instances(items, study_instance_uid=study),
            )
        except (PacsServerError, PacsNotFoundError) as err:  # e.g. HTTP 409: some or all refused
            raise PacsStoreError(
                f"{err} STOW-RS did not confirm the {len(uids)} object(s) ({', '.join(uids)}): check which of them "
                f"are in study {study} before sending again."
            ) from err
        stored = {str(_get(r, "ReferencedSOPInstanceUID")) for r in result.get("ReferencedSOPSequence", [])}
        failed = {
            str(_get(r, "ReferencedSOPInstanceUID")): str(_get(r, "FailureReason"))
            for r in result.get("FailedSOPSequence", [])
        }
        if "ReferencedSOPSequence" not in result and "FailedSOPSequence" not in result:
            stored = set(uids)  # HTTP 200 without a response body: the server took everything
        not_stored = [u for u in uids if u not in stored or u in failed]
        if not_stored:
            raise PacsStoreError(
                f"{self.url} did not store {len(not_stored)} of {len(uids)} object(s) in study {study}: "
                + ", ".join(f"{u} (reason {failed.get(u, 'not acknowledged')})" for u in not_stored)
                + (
                    f"; stored: {', '.join(u for u in uids if u not in not_stored)} (delete them by hand)"
                    if len(not_stored) < len(uids)
                    else ""
                )
                + ". Check the server's log."
            )
        return uids

    def store_results(self, paths: Sequence[str | Path], volume: Volume) -> dict[str, str]:
        """Validate SEG / RTSTRUCT files written for ``volume`` (:func:`check_results`), then STOW-RS them
        into ``volume``'s study in one request.

        Returns:
            file name (e.g. ``"seg.dcm"``) -> SOP Instance UID stored.

        Raises:
            PacsStoreError: an invalid file (nothing sent), or the server refused an object.
        """
        datasets = check_results(paths, volume)
        uids = self.store(list(datasets.values()), study_uid=volume.study_uid)
        return {Path(p).name: uid for p, uid in zip(datasets.keys(), uids, strict=True)}


def open_series(
    source: DicomWebSource, study_uid: str, series_uid: str | None, folder: str | Path
) -> tuple[Volume, SeriesChoice | SeriesSummary]:
    """Choose (or check) the study's CT series, retrieve it into ``folder/<study_uid>/<series_uid>/`` and
    read it as a folder.

    Args:
        source: the server.
        study_uid: the study.
        series_uid: the series; None lets :meth:`DicomWebSource.find_ct_series` choose it.
        folder: cache folder (created; a series already there is reused, see
            :meth:`DicomWebSource.fetch_series`).

    Returns:
        (the CT volume: array (z, y, x) float32 HU, spacing (z, y, x) mm, read by
        :func:`mkunet.io.read_volume`; the :class:`SeriesChoice` when mkunet chose, else the
        checked :class:`SeriesSummary`).

    Raises:
        PacsError: see :class:`DicomWebSource`.
    """
    study_uid = _check_uid(study_uid, "study")
    if series_uid is None:
        choice: SeriesChoice | SeriesSummary = source.find_ct_series(study_uid)
        uid = choice.chosen.series_uid  # type: ignore[union-attr]
    else:
        choice = source.check_series(study_uid, _check_uid(series_uid, "series"))
        uid = series_uid
    return source.fetch_volume(study_uid, uid, Path(folder) / study_uid / uid), choice


def _get(item: Any, keyword: str) -> Any:
    return getattr(item, keyword, None)


def _reason(err: Exception) -> str:
    """A short cause: the OS error of a failed connection ("[Errno 111] Connection refused"), else the
    last line of the message, at most 200 characters."""
    import re

    found = re.findall(r"\[Errno -?\d+\][^'\")\]]*|Name or service not known|CERTIFICATE_VERIFY_FAILED", str(err))
    if found:
        return found[-1].strip()
    text = str(err).strip().splitlines()
    short = text[-1] if text else type(err).__name__
    return short if len(short) <= 200 else short[:197] + "..."


def _is_uid(text: str) -> bool:
    return 0 < len(text) <= 64 and all(part.isdigit() for part in text.split("."))


def _check_uid(uid: str, what: str) -> str:
    uid = str(uid).strip()
    if not _is_uid(uid):
        raise PacsError(
            f"{what} UID {uid!r} is not a DICOM UID (digits and dots, at most 64 characters); copy the "
            f"{'StudyInstanceUID' if what == 'study' else 'SeriesInstanceUID'} from the PACS."
        )
    return uid


def _identity_of(reference: Volume | str | Path) -> tuple[str, str | None, str | None]:
    """(study UID, patient ID, frame-of-reference UID) of a CT volume or of one CT DICOM file."""
    if isinstance(reference, Volume):
        ref_study, patient, frame = reference.study_uid, reference.patient_id, reference.frame_of_reference_uid
        where = "The CT"
    else:
        import pydicom

        try:
            head = pydicom.dcmread(reference, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError) as err:
            raise PacsStoreError(f"Cannot read the CT file '{reference}' ({err}); nothing was sent.") from err
        ref_study = str(head.get("StudyInstanceUID", "")) or None
        patient = str(head.get("PatientID", "")) if "PatientID" in head else None
        frame = str(head.get("FrameOfReferenceUID", "")) or None
        where = f"The CT file '{reference}'"
    if not ref_study:
        raise PacsStoreError(f"{where} has no StudyInstanceUID: SEG / RTSTRUCT cannot be stored in its study.")
    return ref_study, patient, frame


def _frames_of(ds: Any) -> set[str]:
    frames = {str(ds.get("FrameOfReferenceUID", ""))}
    for item in ds.get("ReferencedFrameOfReferenceSequence", []):  # RTSTRUCT
        frames.add(str(item.get("FrameOfReferenceUID", "")))
    return frames - {""}


def check_results(paths: Sequence[str | Path], reference: Volume | str | Path) -> dict[str, Any]:
    """Read back SEG / RTSTRUCT files before they are sent: each must be a whole DICOM file of SOP class
    SEG or RTSTRUCT, in the CT's study, for the CT's patient, on the CT's frame of reference.

    Args:
        paths: the files.
        reference: the CT (a :class:`~mkunet.volume.Volume` read from DICOM, or one of its DICOM files).

    Returns:
        file path (str) -> ``pydicom.Dataset``, in the order given.

    Raises:
        PacsStoreError: the first problem, naming the file (nothing is sent).
    """
    import pydicom

    study, patient, frame = _identity_of(reference)
    out: dict[str, Any] = {}
    for p in paths:
        path = Path(p)
        if str(path) in out:
            raise PacsStoreError(f"'{path}' is given twice; nothing was sent.")
        try:
            ds = pydicom.dcmread(path)
        except (OSError, pydicom.errors.InvalidDicomError) as err:
            raise PacsStoreError(f"'{path}' cannot be read back ({err}); nothing was sent to the PACS.") from err
        problems = []
        if str(ds.get("SOPClassUID", "")) not in _RESULT_CLASSES:
            problems.append(f"SOP class {ds.get('SOPClassUID', '?')} is neither SEG nor RTSTRUCT")
        if str(ds.get("StudyInstanceUID", "")) != study:
            problems.append(f"study {ds.get('StudyInstanceUID', '?')} is not the CT's study {study}")
        if patient is not None and str(ds.get("PatientID", "")) != str(patient):
            problems.append(f"patient {ds.get('PatientID', '?')!r} is not the CT's patient {patient!r}")
        if frame and frame not in _frames_of(ds):
            problems.append(f"it is not on the CT's frame of reference {frame}")
        if not str(ds.get("SOPInstanceUID", "")):
            problems.append("it has no SOP Instance UID")
        if problems:
            raise PacsStoreError(f"'{path}' is not a result for this CT: {'; '.join(problems)}. Nothing was sent.")
        out[str(path)] = ds
    return out


def push_cohort(source: DicomWebSource, results: Any, out_dir: str | Path) -> list[dict[str, Any]]:
    """STOW-RS the SEG and RTSTRUCT of every segmented scan of a cohort run into each scan's study.

    Every scan of ``results`` (:attr:`mkunet.run.store.CohortRun.results`) with ``status == "ok"``
    has its ``OUT/patients/<patient>/T<k>/seg.dcm`` and ``rtstruct.dcm`` pushed (scans without a
    tumour or with an error are not: an empty SEG would mislead in a PACS). All files are checked
    first (:func:`check_results` against the scan's CT file, ``input_path``) and nothing is sent
    when one is wrong; then one STOW-RS request per study.

    Returns:
        one dict per object stored: ``patient_id``, ``timepoint``, ``kind`` (seg | rtstruct),
        ``study_uid``, ``sop_uid``, ``path``.

    Raises:
        PacsStoreError: a missing or invalid file (nothing sent), or the server refused an object.
    """
    from mkunet.run.store import patient_folder_name

    out = Path(out_dir)
    plan: dict[str, list[dict[str, Any]]] = {}
    for row in results.to_dict("records"):
        if row.get("status") != "ok":
            continue
        folder = out / "patients" / patient_folder_name(str(row["patient_id"])) / f"T{int(row['timepoint'])}"
        files = {k: folder / f"{k}.dcm" for k in ("seg", "rtstruct") if (folder / f"{k}.dcm").is_file()}
        if not files:
            raise PacsStoreError(
                f"Patient {row['patient_id']!r} T{int(row['timepoint'])}: no seg.dcm or rtstruct.dcm in '{folder}'; "
                "run with --formats including seg,rtstruct. Nothing was sent."
            )
        ct_dir = Path(str(row.get("input_path", "")))
        cts = sorted(ct_dir.glob("*.dcm")) if ct_dir.is_dir() else [ct_dir]
        checked = check_results(list(files.values()), cts[0] if cts else ct_dir)
        for (kind, path), ds in zip(files.items(), checked.values(), strict=True):
            plan.setdefault(str(ds.StudyInstanceUID), []).append(
                {
                    "patient_id": str(row["patient_id"]),
                    "timepoint": int(row["timepoint"]),
                    "kind": kind,
                    "path": path,
                    "dataset": ds,
                }
            )
    stored: list[dict[str, Any]] = []
    for study, items in plan.items():
        try:
            uids = source.store([i["dataset"] for i in items], study_uid=study)
        except PacsError as err:
            done = ", ".join(f"{i['patient_id']} T{i['timepoint']} {i['kind']}" for i in stored) or "nothing"
            raise type(err)(f"{err} Already stored in earlier studies: {done}.") from err
        for item, uid in zip(items, uids, strict=True):
            stored.append({k: v for k, v in item.items() if k != "dataset"} | {"study_uid": study, "sop_uid": uid})
    return stored


# ============================================================================ worklists

WORKLIST_COLUMNS = ("patient_id", "study_uid", "scan_date")
"""Required columns of a worklist CSV (``series_uid`` is optional)."""


@dataclass(frozen=True)
class WorklistEntry:
    """One scan of a worklist: a patient's study (and optionally series) and its date.

    Attributes:
        patient_id: the patient (the cohort's id; clinical.csv uses it).
        study_uid: StudyInstanceUID on the PACS.
        series_uid: SeriesInstanceUID, or None to let :meth:`DicomWebSource.find_ct_series` choose.
        scan_date: YYYY-MM-DD.
        line: the row's line in the file (header = 1).
    """

    patient_id: str
    study_uid: str
    series_uid: str | None
    scan_date: str
    line: int = 0


def read_worklist(path: str | Path) -> list[WorklistEntry]:
    """Read a worklist CSV: ``patient_id, study_uid[, series_uid], scan_date`` (YYYY-MM-DD or YYYYMMDD).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column, an empty or invalid value, a bad date, a study listed twice for a
            patient; the message names the file, line and column.
    """
    from mkunet.run.inputs import parse_scan_date, read_text_table

    path = Path(path)
    df = read_text_table(path, "worklist", WORKLIST_COLUMNS, ("series_uid",))
    entries: list[WorklistEntry] = []
    seen: set[tuple[str, str, str | None]] = set()
    for i, rec in enumerate(df.to_dict("records")):
        values = {k: str(v).strip() for k, v in rec.items()}
        if not any(values.values()):
            continue
        line = i + 2
        where = f"worklist '{path}' line {line}"
        for col in WORKLIST_COLUMNS:
            if not values[col]:
                raise ValueError(f"{where}: {col} is empty; fill it in.")
        for col in ("study_uid", "series_uid"):
            if values.get(col) and not _is_uid(values[col]):
                raise ValueError(f"{where}: {col} {values[col]!r} is not a DICOM UID (digits and dots, <= 64 chars).")
        date = parse_scan_date(values["scan_date"], where)
        series = values.get("series_uid") or None
        key = (values["patient_id"], values["study_uid"], series)
        if key in seen:
            raise ValueError(f"{where}: patient {key[0]!r}, study {key[1]} is listed twice; keep one row.")
        seen.add(key)
        entries.append(WorklistEntry(values["patient_id"], values["study_uid"], series, date.isoformat(), line))
    if not entries:
        raise ValueError(f"worklist '{path}' has no rows; add one row per scan.")
    return entries


def fetch_worklist(
    source: DicomWebSource,
    entries: Sequence[WorklistEntry],
    cohort_dir: str | Path,
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[Path, list[SeriesChoice | SeriesSummary]]:
    """Retrieve every scan of a worklist into a cohort folder that :func:`mkunet.run.inputs.discover_scans` reads.

    Layout: ``COHORT/<patient>/<study_uid>_<series_uid>/<SOPInstanceUID>.dcm`` and
    ``COHORT/scans.csv`` (``patient_id, timepoint, scan_date, dicom``). Series already there are
    not downloaded again (see :meth:`DicomWebSource.fetch_series`).

    Returns:
        (the cohort folder, per entry the series choice or the checked series).

    Raises:
        PacsError: the first scan that cannot be found or retrieved (named by the worklist line).
    """
    import pandas as pd

    from mkunet.run.store import patient_folder_name
    from mkunet.utils import atomic_write_csv

    cohort = Path(cohort_dir)
    cohort.mkdir(parents=True, exist_ok=True)
    rows = []
    chosen: list[SeriesChoice | SeriesSummary] = []
    for k, entry in enumerate(entries):
        if progress is not None:
            progress(k, len(entries), f"retrieving {entry.patient_id} {entry.scan_date}")
        try:
            if entry.series_uid is None:
                choice: SeriesChoice | SeriesSummary = source.find_ct_series(entry.study_uid)
                series_uid = choice.chosen.series_uid  # type: ignore[union-attr]
            else:
                choice = source.check_series(entry.study_uid, entry.series_uid)
                series_uid = entry.series_uid
            rel = Path(patient_folder_name(entry.patient_id)) / f"{entry.study_uid}_{series_uid}"
            source.fetch_series(entry.study_uid, series_uid, cohort / rel)
        except PacsError as err:
            raise type(err)(f"worklist line {entry.line} (patient {entry.patient_id!r}): {err}") from err
        chosen.append(choice)
        rows.append({"patient_id": entry.patient_id, "scan_date": entry.scan_date, "dicom": rel.as_posix()})
    if progress is not None:
        progress(len(entries), len(entries), "retrieved")
    table = pd.DataFrame(rows)
    table.insert(1, "timepoint", table.groupby("patient_id").cumcount())
    atomic_write_csv(table, cohort / "scans.csv")
    return cohort, chosen
