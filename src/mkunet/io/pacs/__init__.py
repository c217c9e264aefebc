"""A PACS as input and output: pull a CT series over DICOMweb, push DICOM SEG and RTSTRUCT back.

:class:`DicomWebSource` speaks the standard DICOMweb REST API (QIDO-RS to search, WADO-RS to
retrieve, STOW-RS to store) through ``dicomweb-client``; it is tested against a real Orthanc
with its DICOMweb plugin. A series is retrieved into a folder (one file per slice, named
``<SOPInstanceUID>.dcm``) and then read exactly as a folder is (:func:`mkunet.io.read_volume`),
so a scan from a PACS and the same scan on disk give the same :class:`~mkunet.volume.Volume`
(array (z, y, x) float32 HU, spacing (z, y, x) mm) and the same masks.

Modules (every public name is importable from ``mkunet.io.pacs``):

* :mod:`~mkunet.io.pacs.client`: the connection (:class:`DicomWebConnection`): credentials
  (:func:`credentials_from_env`, never a command-line argument), timeout, retries of HTTP 429 /
  5xx by urllib3's ``Retry``, and one :class:`PacsError` subclass per failure;
* :mod:`~mkunet.io.pacs.series`: the series choice (:class:`SeriesChoice`: the study's CT series
  and why, by one documented rule);
* :mod:`~mkunet.io.pacs.retrieve`: retrieval (WADO-RS) into a folder that is also a cache;
* :mod:`~mkunet.io.pacs.push`: STOW-RS of SEG / RTSTRUCT, checked first (:func:`check_results`),
  and :func:`push_cohort`;
* :mod:`~mkunet.io.pacs.source`: :class:`DicomWebSource` (all of the above as methods) and
  :func:`open_series`;
* :mod:`~mkunet.io.pacs.worklist`: a cohort from a worklist CSV (:func:`read_worklist`,
  :func:`fetch_worklist`) for ``mkunet run --dicomweb URL --worklist worklist.csv``.

The retrieved files and the SEG / RTSTRUCT carry the patient's identity (name, ID, birth
date): keep the cache and output folders where patient data may be kept.
"""

from mkunet.io.pacs.client import (
    CREDENTIALS_HELP,
    ENV_CA_BUNDLE,
    ENV_CONFIG,
    ENV_PASSWORD,
    ENV_TOKEN,
    ENV_USER,
    Credentials,
    DicomWebConnection,
    PacsAuthError,
    PacsError,
    PacsNotFoundError,
    PacsRetrieveError,
    PacsSeriesError,
    PacsServerError,
    PacsStoreError,
    PacsTimeoutError,
    PacsUnreachableError,
    credentials_from_env,
    retry_policy,
)
from mkunet.io.pacs.push import check_results, push_cohort
from mkunet.io.pacs.series import SeriesChoice, SeriesSummary
from mkunet.io.pacs.source import DicomWebSource, open_series
from mkunet.io.pacs.worklist import WORKLIST_COLUMNS, WorklistEntry, fetch_worklist, read_worklist

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
    "retry_policy",
    "DicomWebConnection",
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
