"""The secrets sandbox mode makes for itself, once per instance folder, shared by every process.

Without a Twilio account the service runs as a sandbox and needs three secrets nobody configured:
the Twilio auth token its sandbox phone signs webhooks with, the web chat secret its /demo page
signs the widget's identity with, and the token that opens the local-only pages
(devtools/local.py). Each process used to draw its own: under gunicorn with two workers, a
widget signed by one worker was refused by the other (7 of 40 polls got 403).

They are generated once into `<instance folder>/sandbox_secrets` (JSON, mode 0600), the first
time any process needs one — the start step (scripts/serve, `flask --app app init`) or a worker's
first request that needs one; `create_app()` and requests that need none (`/healthz`, the API)
touch nothing. Every process then reads the same file. Two processes starting together agree:
the file is opened with O_CREAT and read or filled under an exclusive lock (`flock`), so exactly
one writes it and every other reads what it wrote, never a half-written file. A secret that is
configured (UPGRADE_CHAT_TWILIO_AUTH_TOKEN, UPGRADE_CHAT_WEB_CHAT_SECRET) is used instead of the
file's. To draw new ones, stop the service, delete the file and start it again.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock (one process at a time)
    fcntl = None  # type: ignore[assignment]

FILE_NAME = "sandbox_secrets"
# The secrets of the sandbox, by the name of the setting they stand in for; LOCAL_TOKEN has no
# setting: it opens the local-only pages and is only ever in this file.
NAMES = ("TWILIO_AUTH_TOKEN", "WEB_CHAT_SECRET", "LOCAL_TOKEN")


class SandboxSecretsUnavailable(Exception):
    """The file cannot be read or written; the message names it and says what to do."""


class SandboxSecrets:
    """The sandbox's generated secrets in `path`, read (or made) on first use, then kept."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._values: dict[str, str] | None = None
        self._lock = threading.Lock()

    def get(self, name: str) -> str:
        """One secret (one of NAMES). Raises SandboxSecretsUnavailable."""
        if name not in NAMES:
            raise KeyError(name)
        return self.load()[name]

    def load(self) -> dict[str, str]:
        """Every secret: from the file, which is made first when there is none."""
        if self._values is None:
            with self._lock:
                if self._values is None:
                    self._values = self._read_or_create()
        return self._values

    def _read_or_create(self) -> dict[str, str]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SandboxSecretsUnavailable(
                f"{self.path}: cannot create it ({exc.strerror}): set UPGRADE_CHAT_INSTANCE_PATH "
                f"to a folder this user may write") from None
        with os.fdopen(fd, "r+", encoding="utf-8") as f:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file is closed
            text = f.read()
            values = self._parse(text) if text.strip() else {}
            missing = [name for name in NAMES if not values.get(name)]
            if missing:  # a new file (or one from a version with fewer secrets): fill it in
                values.update({name: secrets.token_hex(20) for name in missing})
                f.seek(0)
                f.truncate()
                f.write(json.dumps(values, indent=1) + "\n")
                f.flush()
                os.fsync(f.fileno())
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o600)  # private even where the umask was not
        return values

    def _parse(self, text: str) -> dict[str, str]:
        try:
            values = json.loads(text)
        except ValueError:
            values = None
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise SandboxSecretsUnavailable(
                f"{self.path} is not what this service wrote (a JSON object of secrets): stop "
                f"the service, delete the file and start it again (new secrets are drawn)")
        return values
