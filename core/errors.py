"""The core's own error types; the edges (API, webhooks) map them to responses."""


class DomainError(Exception):
    """A request that is well-formed but breaks a rule of the domain (HTTP 422 at the API)."""

    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None,
                 index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.field = field
        self.index = index


class Malformed(DomainError):
    """Input whose shape is wrong: not an object, a missing field, a wrong type (HTTP 400)."""

    code = "malformed"


class NotFound(DomainError):
    """The thing asked for does not exist (HTTP 404 at the API)."""

    code = "not_found"


class ConfigFileError(Exception):
    """A configuration file that cannot be used: names the file, the key and what was
    expected (and what was found)."""

    def __init__(self, source: str, key: str, expected: str, got: object = None) -> None:
        self.source, self.key, self.expected = source, key, expected
        detail = f"{source}: key '{key}': expected {expected}"
        if got is not None:
            detail += f", got {got!r}"
        super().__init__(detail)


class CatalogError(ConfigFileError):
    """A catalog file that cannot be used."""
