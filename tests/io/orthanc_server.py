"""A real Orthanc PACS (with its DICOMweb plugin) for the tests, on 127.0.0.1 on a free port.

``OrthancServer(root).start()`` writes a temporary configuration (storage and index in ``root``,
HTTP on 127.0.0.1 only, the DICOM server off, remote access off, the DICOMweb plugin on at
``/dicom-web/``; authentication on with the given users), starts the ``Orthanc`` binary and waits
until ``/system`` answers; ``stop()`` terminates it (then kills it). :func:`missing_reason` says
why the tests must skip (binary or plugin not installed: Debian packages ``orthanc`` and
``orthanc-dicomweb``, installed by ``.ci/run``).
"""

from __future__ import annotations

import contextlib
import glob
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

ORTHANC = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").is_file() else None)
_PLUGINS = sorted(glob.glob("/usr/share/orthanc/plugins*/libOrthancDicomWeb.so")) + sorted(
    glob.glob("/usr/lib/orthanc/plugins*/libOrthancDicomWeb.so")
)
DICOMWEB_PLUGIN = _PLUGINS[0] if _PLUGINS else None


def missing_reason() -> str | None:
    """Why a real Orthanc cannot be started here (None when it can)."""
    if ORTHANC is None:
        return "the Orthanc binary is not installed (Debian package orthanc; .ci/run installs it)"
    if DICOMWEB_PLUGIN is None:
        return "the Orthanc DICOMweb plugin is not installed (Debian package orthanc-dicomweb; .ci/run installs it)"
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OrthancServer:
    """One Orthanc process; ``url`` is its REST root, ``dicomweb_url`` its DICOMweb root."""

    def __init__(self, root: Path, users: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.users = users
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        self.storage = self.root / "storage"
        self.log = self.root / "orthanc.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def auth(self) -> tuple[str, str] | None:
        """(user, password) of the first registered user, for the test's own REST calls."""
        return next(iter(self.users.items())) if self.users else None

    def config(self) -> dict[str, Any]:
        """The Orthanc configuration (JSON) this server runs with."""
        return {
            "Name": "mkunet-test",
            "StorageDirectory": str(self.storage),
            "IndexDirectory": str(self.storage),
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "DicomPort": free_port(),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": dict(self.users or {}),
            "HttpCompressionEnabled": False,
            "SaveJobs": False,
            "MaximumStorageCacheSize": 0,  # read from disk every time (a test deletes a stored file)
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        }

    def start(self, wait_s: float = 20.0) -> OrthancServer:
        """Start Orthanc and wait until ``/system`` answers (RuntimeError with its log otherwise)."""
        reason = missing_reason()
        if reason is not None:
            raise RuntimeError(reason)
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "orthanc.json"
        config.write_text(json.dumps(self.config(), indent=2), encoding="utf-8")
        with open(self.log, "wb") as log:
            self._process = subprocess.Popen([str(ORTHANC), str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                if requests.get(f"{self.url}/system", auth=self.auth, timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Orthanc did not start within {wait_s} s; its log:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        """Terminate Orthanc (kill it after 10 s)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None

    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        """Orthanc's own REST API (not DICOMweb): for what a test needs to look at or break."""
        response = requests.request(method, f"{self.url}{path}", auth=self.auth, timeout=10, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def attachment_file(self, sop_instance_uid: str) -> Path:
        """The file in Orthanc's storage that holds an instance's DICOM bytes."""
        found = self.rest("POST", "/tools/lookup", data=sop_instance_uid)
        ids = [f["ID"] for f in found if f["Type"] == "Instance"]
        if not ids:
            raise KeyError(f"instance {sop_instance_uid} is not in Orthanc")
        uuid = self.rest("GET", f"/instances/{ids[0]}/attachments/dicom/info")["Uuid"]
        return self.storage / uuid[:2] / uuid[2:4] / uuid

    def __enter__(self) -> OrthancServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
