"""Password hashing for the console's operators (core.ports.PasswordHasher): werkzeug's salted
scrypt. The core is handed this; what was typed is never stored, logged or audited."""

from __future__ import annotations

import secrets
from functools import lru_cache

from werkzeug.security import check_password_hash, generate_password_hash

from core.operators import DUMMY_PASSWORD

METHOD = "scrypt"


class WerkzeugHasher:
    def hash(self, password: str) -> str:
        return generate_password_hash(password, method=METHOD)

    def verify(self, hashed: str, password: str) -> bool:
        try:
            return check_password_hash(hashed, password)
        except ValueError:  # an unreadable hash: no password matches it
            return False


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash no one's password matches, checked for an unknown email (same cost as a real one)."""
    return WerkzeugHasher().hash(DUMMY_PASSWORD)


def generate_password() -> str:
    """A password for a new operator or a reset: 20 URL-safe characters (about 120 bits)."""
    return secrets.token_urlsafe(15)
