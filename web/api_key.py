"""The bearer key of /api/v1: the configured one, or the one the start step keeps in a file.

A deployment with UPGRADE_CHAT_API_KEY uses that. The embedded SQLite service without one has a
key generated once, by the explicit start step (scripts/serve, `flask --app app init`), into
`instance/api_key`. Requests only read that file: every process answers to the key that was
printed, and a missing or empty file is an error that says what to run, never a new key.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

INIT_HINT = "run `flask --app app init` (or scripts/serve), or set UPGRADE_CHAT_API_KEY"


class ApiKeyUnavailable(Exception):
    """There is no key to check requests against; the message says why and what to run."""


class ApiKey:
    """`configured` (blank counts as not set: never an empty key), else the key in `path`."""

    def __init__(self, configured: str | None, path: Path | None, *,
                 setting: str = "API_KEY") -> None:
        self.setting = setting  # the console's session key uses this class too (SECRET_KEY)
        self.configured = str(configured or "").strip() or None
        if self.configured is None and path is None:
            raise ValueError("an API key needs a configured value or a file")
        self.path = path
        self._from_file: str | None = None

    def read(self) -> str:
        """The key. From the file it is read when first needed, then kept; a file that is missing
        or empty raises ApiKeyUnavailable, and nothing is written."""
        if self.configured:
            return self.configured
        if self._from_file is None:
            assert self.path is not None
            try:
                text = self.path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                raise ApiKeyUnavailable(f"{self.path} does not exist: {self._hint()}") from None
            except OSError as exc:
                raise ApiKeyUnavailable(f"{self.path}: cannot read it ({exc.strerror})") from None
            if not text:
                raise ApiKeyUnavailable(f"{self.path} is empty: delete it and run `flask --app "
                                        f"app init` (a new key is generated), or set "
                                        f"UPGRADE_CHAT_{self.setting}")
            self._from_file = text
        return self._from_file

    def _hint(self) -> str:
        return INIT_HINT.replace("UPGRADE_CHAT_API_KEY", f"UPGRADE_CHAT_{self.setting}")

    def create(self) -> str:
        """The start step's half: the key, generated into the file first when there is none.

        Written whole to a temporary file, then linked into place (which fails if the key exists):
        of two processes starting at once one places its key, and neither ever reads a
        half-written or empty file."""
        if self.configured:
            return self.configured
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(secrets.token_urlsafe(32 if self.setting != "API_KEY" else 24) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass
            except OSError:  # a filesystem without hard links (some bind mounts): exclusive create
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    pass
                else:
                    with os.fdopen(fd, "w", encoding="utf-8") as f:
                        f.write(Path(tmp).read_text(encoding="utf-8"))
        finally:
            os.unlink(tmp)
        return self.read()
