"""Pushing results to the PACS (STOW-RS): DICOM SEG and RTSTRUCT, checked before anything is sent.

Nothing half-written in the PACS: :func:`store_results` (and
:meth:`mkunet.io.pacs.DicomWebSource.store_results`) takes files already written and validated
locally (:func:`check_results`: readable, SEG or RTSTRUCT, in the target study, same patient,
same frame of reference) and sends them in one STOW-RS request; an object the server refuses
raises :class:`~mkunet.io.pacs.client.PacsStoreError` naming what was stored and what was not.
:func:`push_cohort` does the same for every segmented scan of a cohort run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mkunet.io.pacs.client import DicomWebConnection, PacsError, PacsNotFoundError, PacsServerError, PacsStoreError
from mkunet.volume import Volume

__all__ = ["SEG_STORAGE", "RTSTRUCT_STORAGE", "check_results", "store", "store_results", "push_cohort"]

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
_RESULT_CLASSES = {SEG_STORAGE: "SEG", RTSTRUCT_STORAGE: "RTSTRUCT"}


def _attr(item: Any, keyword: str) -> Any:
    return getattr(item, keyword, None)


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


def store(conn: DicomWebConnection, datasets: Iterable[Any], study_uid: str | None = None) -> list[str]:
    """STOW-RS: store DICOM datasets (``pydicom.Dataset`` or file paths) in one request.

    Prefer :func:`store_results` for SEG / RTSTRUCT, which validates them first.

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
        result = conn.store_instances(items, study)
    except (PacsServerError, PacsNotFoundError) as err:  # e.g. HTTP 409: some or all refused
        raise PacsStoreError(
            f"{err} STOW-RS did not confirm the {len(uids)} object(s) ({', '.join(uids)}): check which of them "
            f"are in study {study} before sending again."
        ) from err
    stored = {str(_attr(r, "ReferencedSOPInstanceUID")) for r in result.get("ReferencedSOPSequence", [])}
    failed = {
        str(_attr(r, "ReferencedSOPInstanceUID")): str(_attr(r, "FailureReason"))
        for r in result.get("FailedSOPSequence", [])
    }
    if "ReferencedSOPSequence" not in result and "FailedSOPSequence" not in result:
        stored = set(uids)  # HTTP 200 without a response body: the server took everything
    not_stored = [u for u in uids if u not in stored or u in failed]
    if not_stored:
        raise PacsStoreError(
            f"{conn.url} did not store {len(not_stored)} of {len(uids)} object(s) in study {study}: "
            + ", ".join(f"{u} (reason {failed.get(u, 'not acknowledged')})" for u in not_stored)
            + (
                f"; stored: {', '.join(u for u in uids if u not in not_stored)} (delete them by hand)"
                if len(not_stored) < len(uids)
                else ""
            )
            + ". Check the server's log."
        )
    return uids


def store_results(conn: DicomWebConnection, paths: Sequence[str | Path], volume: Volume) -> dict[str, str]:
    """Validate SEG / RTSTRUCT files written for ``volume`` (:func:`check_results`), then STOW-RS them
    into ``volume``'s study in one request.

    Args:
        conn: the server.
        paths: the files (written by :mod:`mkunet.io.dicom_out`).
        volume: the CT they were written for (read from DICOM: its study, patient and frame of reference).

    Returns:
        file name (e.g. ``"seg.dcm"``) -> SOP Instance UID stored.

    Raises:
        PacsStoreError: an invalid file (nothing sent), or the server refused an object.
    """
    datasets = check_results(paths, volume)
    uids = store(conn, list(datasets.values()), study_uid=volume.study_uid)
    return {Path(p).name: uid for p, uid in zip(datasets.keys(), uids, strict=True)}


def _push_plan(results: Any, out: Path) -> dict[str, list[dict[str, Any]]]:
    """study UID -> the checked objects to store in it (``patient_id``, ``timepoint``, ``kind``, ``path``,
    ``dataset``) for every ``ok`` scan of ``results``; raises :class:`PacsStoreError` on the first bad file."""
    from mkunet.run.store import patient_folder_name

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
    return plan


def push_cohort(conn: DicomWebConnection, results: Any, out_dir: str | Path) -> list[dict[str, Any]]:
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
    plan = _push_plan(results, Path(out_dir))
    stored: list[dict[str, Any]] = []
    for study, items in plan.items():
        try:
            uids = store(conn, [i["dataset"] for i in items], study_uid=study)
        except PacsError as err:
            done = ", ".join(f"{i['patient_id']} T{i['timepoint']} {i['kind']}" for i in stored) or "nothing"
            raise type(err)(f"{err} Already stored in earlier studies: {done}.") from err
        for item, uid in zip(items, uids, strict=True):
            stored.append({k: v for k, v in item.items() if k != "dataset"} | {"study_uid": study, "sop_uid": uid})
    return stored
