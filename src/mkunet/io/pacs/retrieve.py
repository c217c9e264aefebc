"""Retrieval (WADO-RS) of a CT series into a folder that doubles as a cache.

The series is retrieved into a folder (one file per slice, named ``<SOPInstanceUID>.dcm``) and
then read exactly as a folder is (:func:`mkunet.io.read_volume`), so a scan from a PACS and the
same scan on disk give the same :class:`~mkunet.volume.Volume` (array (z, y, x) float32 HU,
spacing (z, y, x) mm) and the same masks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mkunet.io.pacs.client import (
    T_N_INSTANCES,
    T_SERIES_UID,
    DicomWebConnection,
    PacsError,
    PacsNotFoundError,
    PacsRetrieveError,
    PacsServerError,
    check_uid,
    is_uid,
    value_of,
)
from mkunet.volume import Volume

__all__ = ["fetch_series", "fetch_volume"]


@dataclass
class _SeriesFolder:
    """The destination folder of one series: writes the instances that belong there, one file each.

    Attributes:
        dest: the folder (``<SOPInstanceUID>.dcm`` files).
        series_uid: the series; instances of another series are ignored.
        expected: the SOP Instance UIDs the server lists (None: unknown); others are ignored.
        received: the SOP Instance UIDs written in this session.
    """

    dest: Path
    series_uid: str
    expected: set[str] | None
    received: set[str] = field(default_factory=set)

    def save(self, ds: Any) -> None:
        """Write ``ds`` under a temporary name, then rename it to ``<SOPInstanceUID>.dcm``."""
        uid = str(ds.get("SOPInstanceUID", ""))
        if not is_uid(uid) or str(ds.get("SeriesInstanceUID", "")) != self.series_uid:
            return  # not one of ours: ignore
        if self.expected is not None and uid not in self.expected:
            return
        tmp = self.dest / f".{uid}.dcm.part"
        ds.save_as(tmp, enforce_file_format=True)
        tmp.replace(self.dest / f"{uid}.dcm")
        self.received.add(uid)

    def remove_others(self, keep: Iterable[str]) -> None:
        """Delete the ``<UID>.dcm`` files whose UID is not in ``keep`` (instances no longer in the series)."""
        keep = set(keep)
        for stale in self.dest.glob("*.dcm"):
            if stale.stem not in keep and is_uid(stale.stem):
                stale.unlink()

    def missing(self, uids: Iterable[str]) -> list[str]:
        """The UIDs of ``uids`` without a file, sorted."""
        return sorted(u for u in uids if not (self.dest / f"{u}.dcm").is_file())


def _series_count(conn: DicomWebConnection, study_uid: str, series_uid: str) -> int | None:
    """The series' NumberOfSeriesRelatedInstances (None: not given); raises when the study lacks the series."""
    records = [r for r in conn.search_series(study_uid) if value_of(r, T_SERIES_UID) == series_uid]
    if not records:
        raise PacsNotFoundError(
            f"Series {series_uid} is not in study {study_uid} on {conn.url}; check the SeriesInstanceUID "
            "(or leave out --series to let mkunet choose)."
        )
    count = value_of(records[0], T_N_INSTANCES)
    return int(count) if count not in (None, "") else None


def _listed_instances(
    conn: DicomWebConnection, study_uid: str, series_uid: str
) -> tuple[set[str] | None, PacsError | None]:
    """(the SOP Instance UIDs the server lists, None) or, when it cannot list them, (None, the error)."""
    try:
        expected = {i["sop_uid"] for i in conn.list_instances(study_uid, series_uid)}
    except (PacsServerError, PacsNotFoundError) as err:  # some servers read every file to list them
        return None, err
    if not expected:
        raise PacsNotFoundError(f"Series {series_uid} of study {study_uid} has no instance on {conn.url}.")
    bad = sorted(u for u in expected if not is_uid(u))
    if bad:
        raise PacsRetrieveError(f"Series {series_uid} on {conn.url} lists invalid SOP Instance UIDs {bad[:3]}.")
    return expected, None


def _retrieve_whole(conn: DicomWebConnection, study_uid: str, folder: _SeriesFolder) -> PacsError | None:
    """The whole series in one WADO-RS request into ``folder``; the error when it failed (None: it did not)."""
    try:
        for ds in conn.retrieve_series(study_uid, folder.series_uid):
            folder.save(ds)
    except (PacsServerError, PacsNotFoundError, PacsRetrieveError) as err:
        return err  # one bad instance can fail the whole request
    return None


def _retrieve_unlisted(
    conn: DicomWebConnection,
    study_uid: str,
    folder: _SeriesFolder,
    n_series: int | None,
    listing_error: PacsError | None,
) -> None:
    """The whole series when the server cannot list its instances; its count is checked against ``n_series``."""
    error = _retrieve_whole(conn, study_uid, folder)
    if n_series is None or len(folder.received) < n_series or error is not None:
        raise PacsRetrieveError(
            f"study {study_uid}, series {folder.series_uid}: {conn.url} delivered {len(folder.received)} of "
            f"{n_series if n_series is not None else 'an unknown number of'} slice(s) and cannot list the "
            f"others ({listing_error}"
            + (f"; {error}" if error is not None else "")
            + "). Check the series on the server (or resend it), or choose another series with --series."
        )
    folder.remove_others(folder.received)


def _retrieve_one_by_one(conn: DicomWebConnection, study_uid: str, folder: _SeriesFolder, uids: list[str]) -> None:
    """Each instance of ``uids`` in its own WADO-RS request; raises naming every one that failed."""
    import pydicom

    where = f"study {study_uid}, series {folder.series_uid}"
    failures: list[str] = []
    for uid in uids:
        try:
            ds = conn.retrieve_instance(study_uid, folder.series_uid, uid)
        except (PacsServerError, PacsNotFoundError) as err:
            failures.append(f"{uid} ({err})")
            continue
        if not isinstance(ds, pydicom.Dataset) or str(ds.get("SOPInstanceUID", "")) != uid:
            failures.append(f"{uid} (the server sent another object)")
            continue
        folder.save(ds)
    if failures:
        n = len(folder.expected) if folder.expected is not None else len(uids)
        raise PacsRetrieveError(
            f"{len(failures)} of {n} slice(s) of {where} could not be retrieved from {conn.url}: "
            + "; ".join(failures[:3])
            + (f"; and {len(failures) - 3} more" if len(failures) > 3 else "")
            + ". The PACS lists them but cannot deliver them: check these instances on the server (or resend "
            "the series to it), or choose another series with --series."
        )


def fetch_series(conn: DicomWebConnection, study_uid: str, series_uid: str, dest: str | Path) -> Path:
    """WADO-RS: retrieve every instance of a series into ``dest`` (``<SOPInstanceUID>.dcm``, one per slice).

    The instances are listed first (QIDO-RS); files already in ``dest`` under their SOP Instance
    UID are kept (a cache) and ``.dcm`` files of instances the server no longer lists are
    removed, so ``dest`` holds exactly the series. The series is retrieved in one request;
    instances still missing are retrieved one by one, and any that fails is named. When the
    server cannot list the instances, the whole series is retrieved and its count checked
    against the series' NumberOfSeriesRelatedInstances. Each file is written under a temporary
    name and renamed. Read the folder with :func:`mkunet.io.read_volume`.

    Args:
        conn: the server.
        study_uid, series_uid: the series.
        dest: the folder (created).

    Returns:
        ``dest``.

    Raises:
        PacsNotFoundError: no such study or series.
        PacsRetrieveError: an instance the server lists cannot be retrieved (named), or fewer
            instances than the series has.
        PacsError: unreachable server, timeout, authentication (see :mod:`mkunet.io.pacs.client`).
    """
    study_uid = check_uid(study_uid, "study")
    series_uid = check_uid(series_uid, "series")
    n_series = _series_count(conn, study_uid, series_uid)
    expected, listing_error = _listed_instances(conn, study_uid, series_uid)
    folder = _SeriesFolder(Path(dest), series_uid, expected)
    folder.dest.mkdir(parents=True, exist_ok=True)
    if expected is None:
        _retrieve_unlisted(conn, study_uid, folder, n_series, listing_error)
        return folder.dest
    folder.remove_others(expected)
    missing = folder.missing(expected)
    if len(missing) == len(expected):  # nothing cached: the whole series in one request
        _retrieve_whole(conn, study_uid, folder)
        missing = folder.missing(expected)
    _retrieve_one_by_one(conn, study_uid, folder, missing)
    return folder.dest


def fetch_volume(conn: DicomWebConnection, study_uid: str, series_uid: str, dest: str | Path) -> Volume:
    """:func:`fetch_series` into ``dest``, then :func:`mkunet.io.read_volume` of that folder.

    Returns:
        the CT volume: array (z, y, x) float32 HU, spacing (z, y, x) mm; ``source`` = the files in ``dest``.
    """
    from mkunet.io import read_volume

    return read_volume(fetch_series(conn, study_uid, series_uid, dest), series_uid=series_uid)
