"""Reading the usage sources file (USAGE_SOURCES, app.py): read once at start-up, validated."""

from __future__ import annotations

from pathlib import Path

from core.usage_sources import SourcesError, UsageSource, parse_sources


def load_sources(path: str | Path | None) -> dict[str, UsageSource]:
    """The file's sources by name (none when no file is configured); a bad file raises
    SourcesError naming the file, the key and what was expected."""
    if not path:
        return {}
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourcesError(str(source), "USAGE_SOURCES", "a readable TOML file",
                           exc.strerror) from None
    except UnicodeDecodeError as exc:
        raise SourcesError(str(source), "(file)", "UTF-8 text", exc.reason) from None
    return parse_sources(text, str(source))
