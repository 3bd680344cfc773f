"""Turning outside input (JSON bodies, CSV rows) into core values, with errors that say where.

Shape problems (not an object, a missing field, a wrong type) are `core.errors.Malformed` (HTTP
400); values that are well-formed but break a rule (a bad timestamp) are `DomainError` (HTTP 422).
Both carry the field path and, in a batch, the item's index. The rules themselves (lengths, known
plans and metrics, E.164 phones) are the core's.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from core.errors import DomainError, Malformed
from core.usage import UsageEvent


def require(obj: Any, key: str, kind: type | tuple[type, ...], path: str, *,
            required: bool = True, index: int | None = None) -> Any:
    """`obj[key]` checked against `kind`; None when optional and absent or null."""
    where = f"{path}.{key}" if path else key
    if not isinstance(obj, dict):
        raise Malformed(f"{path or 'body'}: expected a JSON object", field=path or None, index=index)
    value = obj.get(key)
    if value is None:
        if required:
            raise Malformed(f"{where}: required", field=where, index=index)
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, float) and int in kinds and value.is_integer():
        value = int(value)  # JSON has one number type: 8.0 is the whole number 8 (JSON Schema too)
    if isinstance(value, bool) and bool not in kinds:
        value_ok = False
    else:
        value_ok = isinstance(value, kinds)
    if not value_ok:
        names = " or ".join({str: "a string", int: "a whole number", list: "an array",
                             dict: "an object", float: "a number", bool: "true or false"}[k]
                            for k in kinds)
        raise Malformed(f"{where}: expected {names}", field=where, index=index)
    if isinstance(value, str) and required and not value.strip():
        raise Malformed(f"{where}: must not be empty", field=where, index=index)
    return value


def parse_time(text: str, where: str, index: int | None = None) -> datetime:
    """An ISO 8601 timestamp with a zone ("2026-11-26T09:30:00Z"); anything else is a 422
    (also a moment that has no UTC equivalent, such as 0001-01-01T00:00:00+05:00)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
        if value.tzinfo is not None:
            value.astimezone(timezone.utc)  # OverflowError at the ends of the calendar
    except (ValueError, OverflowError):
        value = None
    if value is None or value.tzinfo is None:
        raise DomainError(f"{where}: {text!r} is not an ISO 8601 timestamp with a time zone "
                          f"(e.g. 2026-11-26T09:30:00Z)", code="invalid_timestamp", field=where,
                          index=index)
    return value


MAX_ID = 200  # the longest id the database keeps (event, message and external ids)


# What may hide a NUL or a lone surrogate in a JSON body: the escapes ("\u0000", "\ud800"), and
# raw bytes ED A0..BF (a surrogate encoded as UTF-8, which the JSON reader decodes as one).
_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def json_body(req) -> Any:
    """The request's JSON (None when it is not JSON), refusing what the database or the parser
    cannot take as a 400: NUL characters and unpaired UTF-16 surrogates anywhere (PostgreSQL
    text cannot hold either; a surrogate is no character at all) and nesting too deep for the
    parser."""
    try:
        data = req.get_json(force=True, silent=True)
    except RecursionError:
        raise Malformed("request body is nested too deeply") from None
    # Strict JSON refuses raw NUL bytes, so a NUL or a surrogate can only come as an escape or
    # as a surrogate's bytes: most bodies need no walk at all.
    if _SUSPECT.search(req.get_data(cache=True)):
        check_storable(data)
    return data


def check_storable(data: Any) -> None:
    """Malformed (400) for decoded JSON holding, in any key or string, a NUL character or an
    unpaired UTF-16 surrogate: PostgreSQL text cannot hold either, a surrogate is no character."""
    pending = [data]
    while pending:  # iterative: as deep as the parser went, without recursion
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and "\x00" in item:
            raise Malformed("request body must not contain NUL characters (\\u0000)")
        elif isinstance(item, str) and _SURROGATE.search(item):
            raise Malformed("request body must be valid Unicode: it has an unpaired surrogate "
                            "(\\ud800-\\udfff)")


def refuse_nul(*values: str | None) -> None:
    """NUL characters in a path, query or header value: a 400 (the database cannot store them)."""
    if any(v is not None and "\x00" in v for v in values):
        raise Malformed("NUL characters are not allowed in the path, query or headers")


def check_id(value: str, where: str) -> str:
    """An id the database keeps: not empty (400: an empty id would make every later message
    without one a duplicate), at most MAX_ID characters (422 too_long, as the core's)."""
    if not value.strip():
        raise Malformed(f"{where}: expected a non-empty id, or no {where} at all", field=where)
    if len(value) > MAX_ID:
        raise DomainError(f"{where}: at most {MAX_ID} characters", code="too_long", field=where)
    return value


# Blank, as str.strip() and str.isspace() read it (an id or a text of only these is empty),
# spelled out because JSON Schema's \s is another set: channels/openapi.json says "not blank" with
# NOT_BLANK and "a number written as a string" with NUMERIC_STRING, character for character.
BLANK = r"\t-\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = f"[^{BLANK}]"
# ASCII digits, an optional sign, fraction and exponent, blanks around them (Decimal alone would
# also take "1_0", "Infinity" and other scripts' digits).
NUMERIC_STRING = re.compile(
    f"^[{BLANK}]*[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?[{BLANK}]*$")


def parse_decimal(value: Any, where: str, out_of_range: str) -> Decimal | None:
    """A number, or a string written as one (NUMERIC_STRING); a number so far out of range that it
    cannot be held (1E-9999999999999999999) is the 422 `out_of_range`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Malformed(f"{where}: expected a number", field=where)
    if isinstance(value, str) and not NUMERIC_STRING.match(value):
        raise Malformed(f"{where}: expected a number, got {value!r}", field=where)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise DomainError(f"{where}: {value!r} is out of range", code=out_of_range,
                          field=where) from None
    if not number.is_finite():
        raise Malformed(f"{where}: expected a finite number", field=where)
    return number


def parse_quantity(value: Any, where: str, index: int | None) -> int:
    """A whole-number quantity from JSON (int) or CSV (text)."""
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise Malformed(f"{where}: expected a whole number, got {value!r}", field=where,
                            index=index) from None
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"{where}: expected a whole number", field=where, index=index)
    return value  # the sign is the core's rule (core.services.check_events)


def usage_event(raw: Any, index: int, path: str = "events") -> UsageEvent:
    """One usage event from a JSON object or a CSV row (a dict of strings)."""
    where = f"{path}[{index}]"
    if not isinstance(raw, dict):
        raise Malformed(f"{where}: expected an object", field=where, index=index)
    event_id = str(require(raw, "id", (str, int), where, index=index))  # length: the core's
    account = require(raw, "account", str, where, index=index)
    metric = require(raw, "metric", str, where, index=index)
    if raw.get("quantity") is None:
        raise Malformed(f"{where}.quantity: required", field=f"{where}.quantity", index=index)
    quantity = parse_quantity(raw["quantity"], f"{where}.quantity", index)
    at = parse_time(require(raw, "at", str, where, index=index), f"{where}.at", index)
    return UsageEvent(id=event_id, account=account.strip(), metric=metric.strip(),
                      quantity=quantity, at=at)


def parse_events(raw: list, path: str = "events") -> list[UsageEvent | DomainError]:
    """Read a batch in order, stopping at the first item that cannot be read: its error takes its
    place, so the core reports whichever problem comes first in the batch."""
    items: list[UsageEvent | DomainError] = []
    for i, item in enumerate(raw):
        try:
            items.append(usage_event(item, i, path))
        except DomainError as exc:
            items.append(exc)
            break
    return items
