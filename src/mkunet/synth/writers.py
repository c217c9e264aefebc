"""Writers: DICOM CT series (pydicom) and the on-disk cohort layout.

Layout written by :func:`write_cohort` (see the project's contracts)::

    DIR/clinical.csv   patient_id, age, sex, smoking, grade, stage, first_scan_date, scan_dates
    DIR/scans.csv      patient_id, timepoint, scan_date, days, image, mask, dicom, series_uid
    DIR/outcomes.csv   patient_id, os_days, event, pdl1_tps, pdl1_positive, pdl1_area_ratio,
                       cd8_density, response
    DIR/truth.json     generator parameters, true LVCR, true volumes, Cox coefficients
    DIR/lesions.csv    patient_id, lesion_id (1), x_mm, y_mm, z_mm: one target lesion per patient, the
                       click at the tumour's centre on the first scan (``mkunet run --lesions``)
    DIR/<patient_id>/T<k>/image.nii.gz (int16 HU), mask.nii.gz (uint8), dicom/ (one file per slice)

DICOM: CT Image Storage, explicit VR little endian, signed int16 pixels with
RescaleSlope 1 / RescaleIntercept 0 (HU = stored value), one study, series and frame of
reference per scan. UIDs are derived deterministically from the cohort seed, patient and
time point (``pydicom.uid.generate_uid`` with an entropy source), so the same seed writes
the same UIDs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mkunet.synth.cohort import Cohort, Patient, attach_outcomes, iter_patients, patient_truth
from mkunet.synth.outcomes import OutcomeModel
from mkunet.volume import Volume

__all__ = ["write_ct_series", "write_cohort", "synthesise", "baseline_lesion", "FORMATS"]

FORMATS = ("nifti", "dicom")
_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _uid(*parts: Any) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["mkunet.synth", *[str(p) for p in parts]])


def _ct_header(
    study_date: str, series_description: str, patient_id: str, patient_name: str | None, birth_date: str, sex: str
):
    """A CT Image dataset with file meta, SOP class, dates, equipment, descriptions and the synthetic patient."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _CT_IMAGE_STORAGE
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = _CT_IMAGE_STORAGE
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "090000"
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = "mkunet synthetic"
    ds.InstitutionName = "synthetic"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "synthetic longitudinal chest CT"
    ds.SeriesDescription = series_description
    ds.ManufacturerModelName = "mkunet.synth"
    ds.PatientName = patient_name or patient_id
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    ds.PatientSex = sex
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "synthetic data, no real patient"
    ds.BodyPartExamined = "CHEST"
    return ds


def _set_image_pixel(ds, ny: int, nx: int, sy: float, sx: float) -> None:
    """Image Pixel and CT Image elements of ``ny`` x ``nx`` int16 HU slices, pixel spacing (row, column) mm."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ny
    ds.Columns = nx
    ds.PixelSpacing = [f"{sy:.6g}", f"{sx:.6g}"]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1600"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"


def write_ct_series(
    volume: Volume,
    directory: str | Path,
    *,
    patient_id: str,
    patient_name: str | None = None,
    birth_date: str = "",
    sex: str = "O",
    study_date: str = "20200101",
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    uid_entropy: Sequence[Any] = (),
    series_description: str = "synthetic chest CT",
    study_id: str = "1",
    series_number: int = 1,
    kvp: float = 120.0,
) -> list[Path]:
    """Write ``volume`` as a DICOM CT Image Storage series, one file per slice.

    Args:
        volume: float32 HU (z, y, x), spacing (z, y, x) mm, origin (x, y, z) mm; values are
            rounded and clipped to int16.
        directory: output folder (created); files ``CT_0000.dcm``...
        patient_id, patient_name, birth_date (YYYYMMDD or ""), sex (M|F|O): patient module.
        study_date: YYYYMMDD (also series/acquisition/content date).
        study_uid, series_uid, frame_of_reference_uid: given UIDs, else derived from
            ``uid_entropy`` (deterministic).
        uid_entropy: values identifying this scan (e.g. seed, patient, time point).

    Returns:
        The written paths in slice order (index k = ``volume.array[k]``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ent = tuple(uid_entropy) or (patient_id, study_date)
    study_uid = study_uid or _uid(*ent, "study")
    series_uid = series_uid or _uid(*ent, "series")
    frame_uid = frame_of_reference_uid or _uid(*ent, "frame")
    sz, sy, sx = volume.spacing
    if not np.allclose(volume.direction, np.eye(3), atol=1e-6):
        raise ValueError(
            f"write_ct_series writes axial volumes with identity direction; got {volume.direction.tolist()} for patient {patient_id!r}."  # noqa: E501
        )
    pixels = np.clip(np.rint(volume.array), -32768, 32767).astype("<i2")
    nz, ny, nx = pixels.shape
    ds = _ct_header(study_date, series_description, patient_id, patient_name, birth_date, sex)
    ds.SliceThickness = f"{sz:.6g}"
    ds.SpacingBetweenSlices = f"{sz:.6g}"
    ds.KVP = f"{kvp:.6g}"
    ds.SoftwareVersions = "mkunet"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = study_id
    ds.SeriesNumber = int(series_number)
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    _set_image_pixel(ds, ny, nx, sy, sx)
    ox, oy, oz = volume.origin
    return _write_slices(ds, pixels, directory, ent, (ox, oy, oz), sz)


_VARYING = ("SOPInstanceUID", "InstanceNumber", "ImagePositionPatient", "SliceLocation")


def _encode(ds) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buf = DicomBytesIO()
    buf.is_little_endian = True
    buf.is_implicit_VR = False
    write_dataset(buf, ds)
    return buf.getvalue()


def _write_slices(
    ds, pixels: np.ndarray, directory: Path, ent: tuple, origin: tuple[float, float, float], sz: float
) -> list[Path]:
    """Write one file per slice fast: the constant elements are encoded once, in tag-ordered
    chunks between the per-slice elements (SOP Instance UID, Instance Number, Image
    Position, Slice Location, Pixel Data), so each slice only encodes those."""
    import struct

    import pydicom
    from pydicom.datadict import tag_for_keyword
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    ox, oy, oz = origin
    cuts = [tag_for_keyword(k) for k in _VARYING] + [0x7FE00010]
    const = pydicom.Dataset()
    for elem in ds:
        const.add(elem)
    chunks = []
    lo = 0
    for cut in cuts:
        part = pydicom.Dataset()
        for elem in const:
            if lo <= elem.tag < cut and elem.keyword not in _VARYING:
                part.add(elem)
        chunks.append(_encode(part))
        lo = cut
    nz, ny, nx = pixels.shape
    pix_header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, ny * nx * 2)
    paths = []
    for k in range(nz):
        uid = _uid(*ent, "slice", k)
        z = oz + k * sz
        values = (uid, k + 1, [f"{ox:.6f}", f"{oy:.6f}", f"{z:.6f}"], f"{z:.6f}")
        body = [chunks[0]]
        for i, (kw, val) in enumerate(zip(_VARYING, values)):
            one = pydicom.Dataset()
            setattr(one, kw, val)
            body.append(_encode(one))
            body.append(chunks[i + 1])
        meta = ds.file_meta
        meta.MediaStorageSOPInstanceUID = uid
        mbuf = DicomBytesIO()
        mbuf.is_little_endian = True
        mbuf.is_implicit_VR = False
        write_file_meta_info(mbuf, meta, enforce_standard=True)
        path = directory / f"CT_{k:04d}.dcm"
        with open(path, "wb") as fh:
            fh.write(b"\x00" * 128 + b"DICM")
            fh.write(mbuf.getvalue())
            fh.write(b"".join(body))
            fh.write(pix_header)
            fh.write(pixels[k].tobytes())
        paths.append(path)
    return paths


def _check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"`formats` must be a non-empty subset of {FORMATS}, got {formats!r}.")
    return formats


def _write_patient(p: Patient, out: Path, formats: tuple[str, ...], seed: int) -> list[dict[str, Any]]:
    from mkunet.io import write_mask, write_volume

    rows = []
    birth = f"{p.scans[0].date.year - int(p.clinical['age'])}0101"
    for s in p.scans:
        d = out / p.patient_id / f"T{s.timepoint}"
        d.mkdir(parents=True, exist_ok=True)
        row = {
            "patient_id": p.patient_id,
            "timepoint": s.timepoint,
            "scan_date": s.date.isoformat(),
            "days": s.days,
            "image": "",
            "mask": "",
            "dicom": "",
            "series_uid": "",
        }
        ent = (seed, p.patient_id, s.timepoint)
        series_uid = _uid(*ent, "series")
        study_uid = _uid(*ent, "study")
        frame_uid = _uid(*ent, "frame")
        s.volume.series_uid, s.volume.study_uid, s.volume.frame_of_reference_uid = series_uid, study_uid, frame_uid
        if "nifti" in formats:
            write_volume(s.volume, d / "image.nii.gz", array=s.volume.array.astype(np.int16))
            write_mask(s.mask, s.volume, d / "mask.nii.gz")
            row["image"] = f"{p.patient_id}/T{s.timepoint}/image.nii.gz"
            row["mask"] = f"{p.patient_id}/T{s.timepoint}/mask.nii.gz"
        if "dicom" in formats:
            write_ct_series(
                s.volume,
                d / "dicom",
                patient_id=p.patient_id,
                patient_name=f"SYNTHETIC^{p.patient_id}",
                birth_date=birth,
                sex=p.clinical["sex"],
                study_date=s.study_date,
                study_uid=study_uid,
                series_uid=series_uid,
                frame_of_reference_uid=frame_uid,
                uid_entropy=ent,
                study_id=f"T{s.timepoint}",
                series_number=1,
            )
            row["dicom"] = f"{p.patient_id}/T{s.timepoint}/dicom"
        row["series_uid"] = series_uid
        rows.append(row)
    return rows


def baseline_lesion(p: Patient) -> dict[str, Any] | None:
    """The patient's target lesion as a lesions.csv row: the click at the tumour's centre on the first scan.

    The click is the baseline mask voxel nearest (in mm) to the mask's centroid, so it lies
    inside the tumour even when the centroid does not (a crescent, a cavity), converted to
    physical patient coordinates with ``scan.volume.index_to_physical((z, y, x))``.

    Returns:
        ``{"patient_id", "lesion_id": "1", "x_mm", "y_mm", "z_mm"}`` ((x, y, z) mm, DICOM LPS), or
        None when the baseline mask is empty.
    """
    scan = p.scans[0]
    idx = np.argwhere(np.asarray(scan.mask, bool))  # (n, 3) z, y, x
    if idx.size == 0:
        return None
    centroid = idx.mean(axis=0)
    d2 = (((idx - centroid) * np.asarray(scan.volume.spacing, np.float64)) ** 2).sum(axis=1)
    x, y, z = (float(v) for v in scan.volume.index_to_physical(idx[int(np.argmin(d2))].astype(np.float64)))
    return {"patient_id": p.patient_id, "lesion_id": "1", "x_mm": round(x, 4), "y_mm": round(y, 4), "z_mm": round(z, 4)}


def _write_lesions(patients: list[Patient], lesion_rows: list[dict[str, Any] | None], out: Path) -> None:
    """DIR/lesions.csv; a patient whose baseline mask is empty has no row (a warning names it)."""
    import warnings

    missing = [p.patient_id for p, r in zip(patients, lesion_rows) if r is None]
    if missing:
        warnings.warn(
            f"synthetic patient(s) {missing} have an empty baseline mask: no row in lesions.csv "
            "(mkunet run --lesions segments them on the whole volume).",
            UserWarning,
            stacklevel=3,
        )
    cols = ["patient_id", "lesion_id", "x_mm", "y_mm", "z_mm"]
    pd.DataFrame([r for r in lesion_rows if r is not None], columns=cols).to_csv(out / "lesions.csv", index=False)


def _write_tables(
    patients: list[Patient],
    params: dict,
    model: OutcomeModel,
    out: Path,
    scan_rows: list[dict],
    lesion_rows: list[dict[str, Any] | None],
) -> None:
    clinical = pd.DataFrame(
        [
            {
                "patient_id": p.patient_id,
                **p.clinical,
                "first_scan_date": p.scans[0].date.isoformat(),
                "scan_dates": ";".join(s.date.isoformat() for s in p.scans),
            }
            for p in patients
        ]
    )
    clinical.to_csv(out / "clinical.csv", index=False)
    pd.DataFrame(scan_rows).to_csv(out / "scans.csv", index=False)
    cols = ["os_days", "event", "pdl1_tps", "pdl1_positive", "pdl1_area_ratio", "cd8_density", "response"]
    pd.DataFrame([{"patient_id": p.patient_id, **{c: p.outcomes[c] for c in cols}} for p in patients]).to_csv(
        out / "outcomes.csv", index=False
    )
    truth = {"generator": params, "outcome_model": model.to_dict(), "patients": [patient_truth(p) for p in patients]}
    (out / "truth.json").write_text(json.dumps(truth, indent=1, default=_json_default))
    _write_lesions(patients, lesion_rows, out)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


def write_cohort(
    cohort: Cohort,
    out_dir: str | Path,
    formats: Sequence[str] = FORMATS,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``cohort`` in the layout of the module docstring; returns ``out_dir``.

    Args:
        cohort: from :func:`mkunet.synth.make_cohort`.
        out_dir: output folder (created; existing files with the same names are overwritten).
        formats: any of "nifti", "dicom".
        progress: called as ``progress(done, total)`` after each patient.
    """
    formats = _check_formats(formats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    seed = int(cohort.params.get("seed", 0))
    for i, p in enumerate(cohort.patients):
        rows += _write_patient(p, out, formats, seed)
        if progress is not None:
            progress(i + 1, len(cohort.patients))
    lesions = [baseline_lesion(p) for p in cohort.patients]
    _write_tables(cohort.patients, cohort.params, cohort.outcome_model, out, rows, lesions)
    return out


class _PatientWriter:
    """Writes one patient's files, then drops its pixel arrays (keeps geometry, UIDs and the lesions.csv row)."""

    def __init__(self, out: Path, formats: tuple[str, ...], seed: int) -> None:
        self.out, self.formats, self.seed = out, formats, seed

    def __call__(self, p: Patient) -> None:
        rows = _write_patient(p, self.out, self.formats, self.seed)
        p.__dict__["_lesion"] = baseline_lesion(p)
        for s in p.scans:
            v = s.volume
            s.volume = Volume(
                np.zeros((1, 1, 1), np.float32),
                v.spacing,
                v.origin,
                patient_id=p.patient_id,
                series_uid=v.series_uid,
                study_uid=v.study_uid,
                frame_of_reference_uid=v.frame_of_reference_uid,
                meta=v.meta,
            )
            s.mask = np.zeros((1, 1, 1), bool)
        p.__dict__["_rows"] = rows


def synthesise(
    out_dir: str | Path,
    n_patients: int,
    *,
    seed: int,
    formats: Sequence[str] = FORMATS,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> Cohort:
    """Generate and write a cohort patient by patient (pixel data released after writing,
    so memory stays bounded). Same files as ``write_cohort(make_cohort(...))``.

    ``workers`` (in ``options``) > 1 generates and writes patients in that many forked
    processes; the files are identical for any value.

    Returns:
        The Cohort with its scans' pixel arrays dropped (tables and truth kept).
    """
    from mkunet.synth.cohort import make_cohort  # noqa: F401  (same defaults)

    formats = _check_formats(formats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = options.pop("outcome_model", None) or OutcomeModel()
    from mkunet.synth.cohort import generator_params

    probe = {
        k: v for k, v in make_cohort.__kwdefaults__.items() if k not in ("seed", "outcome_model", "progress", "workers")
    }
    probe.update({k: v for k, v in options.items() if k != "workers"})
    params = generator_params(n_patients, seed, **probe)
    patients: list[Patient] = []
    rows: list[dict] = []
    lesions: list[dict[str, Any] | None] = []
    gen_opts = {k: v for k, v in options.items()}
    workers = int(gen_opts.pop("workers", 1))
    writer = _PatientWriter(out, formats, seed)
    for p in iter_patients(
        n_patients, seed=seed, workers=workers, on_patient=writer if workers > 1 else None, **gen_opts
    ):
        if workers <= 1:
            writer(p)
        rows += p.__dict__.pop("_rows")
        lesions.append(p.__dict__.pop("_lesion"))
        patients.append(p)
        if progress is not None:
            progress(len(patients), int(n_patients))
    attach_outcomes(patients, model, seed)
    _write_tables(patients, params, model, out, rows, lesions)
    return Cohort(patients, params, model)
