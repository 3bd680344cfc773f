"""SMS length: how many segments a text takes (GSM-7 when every character allows, else UCS-2)."""

from __future__ import annotations

# The GSM 03.38 default alphabet, and its extension table (each of those costs two septets).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text)


def segments(text: str) -> int:
    """Segments an SMS of `text` takes: GSM-7 160 septets alone or 153 per concatenated part;
    UCS-2 (any other character, an emoji or a curly quote) 70 alone or 67 per part, counted in
    UTF-16 code units."""
    if not text:
        return 1
    if is_gsm7(text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else -(-units // part)
