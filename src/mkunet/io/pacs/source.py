"""A PACS as input and output: :class:`DicomWebSource` and :func:`open_series`.

:class:`DicomWebSource` speaks the standard DICOMweb REST API (QIDO-RS to search, WADO-RS to
retrieve, STOW-RS to store) through ``dicomweb-client``; it is tested against a real Orthanc
with its DICOMweb plugin. Its connection, credentials, retries and errors are those of
:class:`~mkunet.io.pacs.client.DicomWebConnection`; its methods are the functions of
:mod:`~mkunet.io.pacs.series` (series choice), :mod:`~mkunet.io.pacs.retrieve` (retrieval into
a cached folder) and :mod:`~mkunet.io.pacs.push` (STOW-RS of checked SEG / RTSTRUCT).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mkunet.io.pacs import push, retrieve, series
from mkunet.io.pacs.client import DicomWebConnection, check_uid
from mkunet.io.pacs.series import SeriesChoice, SeriesSummary
from mkunet.volume import Volume

__all__ = ["DicomWebSource", "open_series"]


class DicomWebSource(DicomWebConnection):
    """A DICOMweb server (QIDO-RS, WADO-RS, STOW-RS) as a source of CT series and a store of results.

    Args:
        url: the DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web`` (Orthanc) or
            ``https://pacs.example.org/dicomweb``.
        credentials: :class:`~mkunet.io.pacs.client.Credentials`; default
            :func:`~mkunet.io.pacs.client.credentials_from_env` (never from the CLI).
        timeout_s: per request, the longest wait for a connection or for the next bytes (s).
        retries: how many times an HTTP 5xx / 429 answer is retried (0: no retry).
        backoff_s: wait before the first retry (s); doubles at every retry.

    Raises:
        PacsError: a URL that is not http(s)://host[:port][/path], a bad timeout / retry setting,
            bad credentials settings (see :func:`~mkunet.io.pacs.client.credentials_from_env`).
    """

    def find_ct_series(self, study_uid: str) -> SeriesChoice:
        """Choose the CT series of a study and say why (:func:`mkunet.io.pacs.series.find_ct_series`).

        Raises:
            PacsNotFoundError: no such study.
            PacsSeriesError: no usable CT series (the message lists every series and why it was skipped).
        """
        return series.find_ct_series(self, study_uid)

    def check_series(self, study_uid: str, series_uid: str) -> SeriesSummary:
        """The given series, checked: a usable CT series (:func:`mkunet.io.pacs.series.check_series`).

        Raises:
            PacsNotFoundError: no such study or series.
            PacsSeriesError: the series is not a usable CT series (the message says why).
        """
        return series.check_series(self, study_uid, series_uid)

    def fetch_series(self, study_uid: str, series_uid: str, dest: str | Path) -> Path:
        """WADO-RS: every instance of a series into ``dest`` (``<SOPInstanceUID>.dcm``), reusing the files
        already there (:func:`mkunet.io.pacs.retrieve.fetch_series`).

        Returns:
            ``dest``.

        Raises:
            PacsNotFoundError: no such study or series.
            PacsRetrieveError: an instance the server lists cannot be retrieved (named).
        """
        return retrieve.fetch_series(self, study_uid, series_uid, dest)

    def fetch_volume(self, study_uid: str, series_uid: str, dest: str | Path) -> Volume:
        """:meth:`fetch_series` into ``dest``, then :func:`mkunet.io.read_volume` of that folder.

        Returns:
            the CT volume: array (z, y, x) float32 HU, spacing (z, y, x) mm; ``source`` = the files in ``dest``.
        """
        return retrieve.fetch_volume(self, study_uid, series_uid, dest)

    def store(self, datasets: Iterable[Any], study_uid: str | None = None) -> list[str]:
        """STOW-RS: store DICOM datasets (``pydicom.Dataset`` or file paths) in one request
        (:func:`mkunet.io.pacs.push.store`); prefer :meth:`store_results` for SEG / RTSTRUCT.

        Returns:
            the SOP Instance UIDs the server stored, in the order given.

        Raises:
            PacsStoreError: the server refused one or more objects, or a file cannot be read.
        """
        return push.store(self, datasets, study_uid)

    def store_results(self, paths: Sequence[str | Path], volume: Volume) -> dict[str, str]:
        """Check SEG / RTSTRUCT files written for ``volume``, then STOW-RS them into its study in one
        request (:func:`mkunet.io.pacs.push.store_results`).

        Returns:
            file name (e.g. ``"seg.dcm"``) -> SOP Instance UID stored.

        Raises:
            PacsStoreError: an invalid file (nothing sent), or the server refused an object.
        """
        return push.store_results(self, paths, volume)


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
        PacsError: see :mod:`mkunet.io.pacs.client`.
    """
    study_uid = check_uid(study_uid, "study")
    choice: SeriesChoice | SeriesSummary
    if series_uid is None:
        choice = source.find_ct_series(study_uid)
        uid = choice.chosen.series_uid
    else:
        uid = check_uid(series_uid, "series")
        choice = source.check_series(study_uid, uid)
    return source.fetch_volume(study_uid, uid, Path(folder) / study_uid / uid), choice
