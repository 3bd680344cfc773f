"""Reading a catalog file: the one loader for the service's catalog (CATALOG_PATH, app.py) and a
catalog an operator tries first (`flask --app app thresholds dry-run --catalog new.toml`)."""

from __future__ import annotations

from pathlib import Path

from core.catalog import Catalog, parse_catalog
from core.errors import CatalogError

DEFAULT_CATALOG = Path(__file__).resolve().parents[1] / "core" / "catalog.toml"


def load_catalog(path: str | Path | None) -> Catalog:
    """Read and validate the catalog file; a bad one raises CatalogError naming file and key."""
    source = Path(path) if path else DEFAULT_CATALOG
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(str(source), "CATALOG_PATH", "a readable TOML file", exc.strerror) from None
    except UnicodeDecodeError as exc:
        raise CatalogError(str(source), "(file)", "UTF-8 text", exc.reason) from None
    return parse_catalog(text, str(source))
