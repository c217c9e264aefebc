"""The connection to a DICOMweb server: URL, credentials, timeout, retries, and one error per failure.

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
:class:`PacsStoreError` (STOW-RS refused an object).

Retries
-------
HTTP 429, 500, 502, 503 and 504 answers are retried ``retries`` times by urllib3's ``Retry``
mounted on the ``requests`` session that ``dicomweb-client`` uses (:func:`retry_policy`), with
exponential back-off: ``backoff_s`` before the first retry, then 2x, 4x, ... (at most
:data:`MAX_WAIT_S` each; a ``Retry-After`` header of a 429 / 503 answer is honoured, up to the
same bound). Queries and retrievals (GET) and STOW-RS (POST) are retried: storing an object
again under its SOP Instance UID does not duplicate it, and the request body is always sent
whole (never as a one-shot chunked stream), so a retry sends it again. Refused connections and
timeouts are not retried, so they are reported within ``timeout_s``. ``dicomweb-client``'s own
retrying is switched off: it retries every exception (refused connections and timeouts too) and
re-sends a chunked STOW-RS body that was already consumed.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
import tomllib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from urllib3.util.retry import Retry

__all__ = [
    "ENV_USER",
    "ENV_PASSWORD",
    "ENV_TOKEN",
    "ENV_CONFIG",
    "ENV_CA_BUNDLE",
    "CREDENTIALS_HELP",
    "RETRY_STATUSES",
    "MAX_WAIT_S",
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

RETRY_STATUSES = (429, 500, 502, 503, 504)
"""HTTP statuses that are retried (too many requests, server errors, bad gateway, unavailable, gateway timeout)."""
MAX_WAIT_S = 120.0
"""The longest wait before one retry (s): the back-off and a server's ``Retry-After`` are capped here."""

# DICOM JSON tags (QIDO-RS / WADO-RS metadata)
T_SOP_CLASS = "00080016"
T_SOP_UID = "00080018"
T_MODALITY = "00080060"
T_IMAGE_TYPE = "00080008"
T_SERIES_DESCRIPTION = "0008103E"
T_SERIES_UID = "0020000E"
T_STUDY_UID = "0020000D"
T_PATIENT_ID = "00100020"
T_SERIES_NUMBER = "00200011"
T_N_INSTANCES = "00201209"
T_ORIENTATION = "00200037"
T_THICKNESS = "00180050"
T_ROWS = "00280010"
T_COLUMNS = "00280011"
T_NUMBER_OF_FRAMES = "00280008"


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


# ============================================================================ small helpers


def value_of(item: Mapping[str, Any], tag: str) -> Any:
    """The first value of ``tag`` in a DICOM JSON object (None when absent)."""
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def values_of(item: Mapping[str, Any], tag: str) -> list[Any]:
    """Every value of ``tag`` in a DICOM JSON object (empty when absent)."""
    return list((item.get(tag) or {}).get("Value") or [])


def reason_of(err: Exception) -> str:
    """A short cause: the OS error of a failed connection ("[Errno 111] Connection refused"), else the
    last line of the message, at most 200 characters."""
    found = re.findall(r"\[Errno -?\d+\][^'\")\]]*|Name or service not known|CERTIFICATE_VERIFY_FAILED", str(err))
    if found:
        return found[-1].strip()
    text = str(err).strip().splitlines()
    short = text[-1] if text else type(err).__name__
    return short if len(short) <= 200 else short[:197] + "..."


def is_uid(text: str) -> bool:
    """A DICOM UID: digits and dots, 1 to 64 characters."""
    return 0 < len(text) <= 64 and all(part.isdigit() for part in text.split("."))


def check_uid(uid: str, what: str) -> str:
    """``uid`` stripped; raises :class:`PacsError` naming ``what`` ("study", "series") when it is not a UID."""
    uid = str(uid).strip()
    if not is_uid(uid):
        raise PacsError(
            f"{what} UID {uid!r} is not a DICOM UID (digits and dots, at most 64 characters); copy the "
            f"{'StudyInstanceUID' if what == 'study' else 'SeriesInstanceUID'} from the PACS."
        )
    return uid


# ============================================================================ retries


class _DoublingRetry(Retry):
    """urllib3's ``Retry`` whose first retry already waits ``backoff_factor`` s (urllib3's own waits
    nothing before the first retry), then 2x, 4x, ... (capped at ``backoff_max``)."""

    def get_backoff_time(self) -> float:
        n = len(self.history)  # failed attempts so far
        return 0.0 if n == 0 else float(min(self.backoff_max, self.backoff_factor * 2 ** (n - 1)))


def retry_policy(retries: int, backoff_s: float) -> Retry:
    """The urllib3 ``Retry`` of a :class:`DicomWebConnection` (see the module docstring).

    Args:
        retries: retries of an HTTP 429 / 5xx answer (0: none).
        backoff_s: wait before the first retry (s); doubles at every retry, at most :data:`MAX_WAIT_S`.

    Returns:
        a ``Retry`` for ``requests.adapters.HTTPAdapter(max_retries=...)``: status retries only (no
        connection or read retries), and the last answer is returned (not raised) when the retries
        are spent, so that ``dicomweb-client`` raises its ``requests.HTTPError``.
    """
    return _DoublingRetry(
        total=retries,
        connect=0,  # a refused connection or a connect timeout is reported at once
        read=False,  # a read timeout is raised as such (requests.ReadTimeout), not retried
        other=0,
        status=retries,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "POST"}),
        backoff_factor=backoff_s,
        backoff_max=MAX_WAIT_S,
        raise_on_status=False,
        respect_retry_after_header=True,
        retry_after_max=int(MAX_WAIT_S),
    )


def _attempts(response: Any) -> int | None:
    """How many requests urllib3 made for the answer ``response`` (None: unknown)."""
    retries = getattr(getattr(response, "raw", None), "retries", None)
    history = getattr(retries, "history", None)
    return None if history is None else len(history) + 1


# ============================================================================ the connection

_T = TypeVar("_T")


class DicomWebConnection:
    """A DICOMweb server reached through ``dicomweb-client``: authentication, timeout, retries and errors.

    The base of :class:`mkunet.io.pacs.DicomWebSource`, which adds series choice, retrieval and
    storage; this class answers QIDO-RS queries.

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
        if isinstance(retries, bool) or int(retries) != retries or retries < 0:
            raise PacsError(f"retries must be an integer >= 0, got {retries!r}.")
        if not (backoff_s >= 0 and math.isfinite(backoff_s)):
            raise PacsError(f"backoff_s must be a number of seconds >= 0, got {backoff_s!r}.")
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
        adapter = requests.adapters.HTTPAdapter(max_retries=retry_policy(self.retries, self.backoff_s))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        headers: dict[str, str] = {}
        if creds.token:
            headers["Authorization"] = f"Bearer {creds.token}"
        elif creds.username:
            session.auth = (creds.username, creds.password or "")
        if creds.ca_bundle is not None:
            session.verify = str(creds.ca_bundle)
        self._client = DICOMwebClient(self.url, session=session, headers=headers or None, timeout=self.timeout_s)
        self._client.set_http_retry_params(retry=False)  # the session's urllib3 Retry retries (module docstring)
        self._client.set_chunk_size(2**62)  # STOW-RS bodies whole, never a one-shot stream: a retry resends them

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, auth={self.credentials.kind}, timeout_s={self.timeout_s:g})"

    # ------------------------------------------------------------------ HTTP errors
    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        """Run one client call (the session retries HTTP 5xx / 429); turn every failure into a :class:`PacsError`."""
        import requests

        try:
            return fn()
        except requests.HTTPError as err:
            raise self._http_error(what, err) from err
        except requests.Timeout as err:
            raise PacsTimeoutError(
                f"{what}: {self.url} did not answer within {self.timeout_s:g} s. Check that the server is up "
                "and not overloaded, or allow more time (--timeout / timeout_s)."
            ) from err
        except requests.ConnectionError as err:
            raise PacsUnreachableError(
                f"{what}: cannot reach the DICOMweb server at {self.url} ({reason_of(err)}). Check the URL (the "
                "DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web for Orthanc), that the server is running, "
                "and the network / TLS settings."
            ) from err
        except requests.RequestException as err:
            raise PacsServerError(f"{what}: request to {self.url} failed ({reason_of(err)}).") from err
        except ValueError as err:  # not DICOMweb: unexpected media type, not JSON, bad multipart
            if isinstance(err, PacsError):
                raise
            raise PacsServerError(
                f"{what}: the answer of {self.url} is not a DICOMweb answer ({err}). Check that the URL is the "
                "server's DICOMweb root (Orthanc: http://host:8042/dicom-web)."
            ) from err

    def _http_error(self, what: str, err: Any) -> PacsError:
        """The :class:`PacsError` of an HTTP error answer (``requests.HTTPError``), after the retries."""
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            creds = self.credentials
            given = "no credentials"
            if creds.kind != "none":
                given = f"the {creds.kind} credentials from the {creds.source}"
            check = (
                "Check the user name and password or token, and that this user may read and write the study. "
                if status == 403 or creds.kind != "none"
                else ""
            )
            return PacsAuthError(
                f"{what}: {self.url} refused access (HTTP {status}) with {given}. {check}{CREDENTIALS_HELP}"
            )
        if status == 404:
            return PacsNotFoundError(
                f"{what}: not found on {self.url} (HTTP 404). Check the UIDs, and that the URL is the "
                "server's DICOMweb root (Orthanc: http://host:8042/dicom-web)."
            )
        attempts = _attempts(err.response)
        tries = f" after {attempts} attempts" if attempts is not None and attempts > 1 else ""
        return PacsServerError(
            f"{what}: {self.url} answered HTTP {status}{tries} ({reason_of(err)}). Check the server's log; "
            "retry later (the number of retries and the back-off are configurable)."
        )

    # ------------------------------------------------------------------ queries
    def search_series(self, study_uid: str) -> list[dict[str, Any]]:
        """QIDO-RS: the series of a study (DICOM JSON records).

        Raises:
            PacsNotFoundError: no such study on the server (no series).
        """
        study_uid = check_uid(study_uid, "study")
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
        study_uid = check_uid(study_uid, "study")
        where = f"study {study_uid}" + (f", series {series_uid}" if series_uid else "")
        found = self._call(
            f"Listing the instances of {where}",
            lambda: self._client.search_for_instances(study_uid, series_uid),
        )
        return [
            {
                "sop_uid": str(value_of(r, T_SOP_UID) or ""),
                "sop_class": str(value_of(r, T_SOP_CLASS) or ""),
                "series_uid": str(value_of(r, T_SERIES_UID) or series_uid or ""),
                "modality": str(value_of(r, T_MODALITY) or ""),
            }
            for r in found
        ]

    def series_metadata(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """WADO-RS: the metadata (DICOM JSON, no pixels) of every instance of a series."""
        return self._call(
            f"Retrieving the metadata of study {study_uid}, series {series_uid}",
            lambda: self._client.retrieve_series_metadata(study_uid, series_uid),
        )

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[Any]:
        """WADO-RS: every instance of a series (``pydicom.Dataset``), in one request."""
        return self._call(
            f"Retrieving study {study_uid}, series {series_uid}",
            lambda: self._client.retrieve_series(study_uid, series_uid),
        )

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> Any:
        """WADO-RS: one instance (``pydicom.Dataset``)."""
        return self._call(
            f"Retrieving instance {sop_uid} of study {study_uid}, series {series_uid}",
            lambda: self._client.retrieve_instance(study_uid, series_uid, sop_uid),
        )

    def store_instances(self, datasets: list[Any], study_uid: str) -> Any:
        """STOW-RS: store ``datasets`` in study ``study_uid`` in one request; the answer (a ``pydicom.Dataset``).

        Prefer :func:`mkunet.io.pacs.push.store`, which reads files and checks the answer.
        """
        return self._call(
            f"Storing {len(datasets)} object(s) in study {study_uid}",
            lambda: self._client.store_instances(datasets, study_instance_uid=study_uid),
        )
