"""Exact money: Decimal dollars rounded half-up to cents, and how they are shown."""

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def to_cents(amount: Decimal | int | str) -> Decimal:
    """Round an amount in dollars half-up to whole cents ("0.005" -> "0.01")."""
    return Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP)


def decimal_places(amount: Decimal) -> int:
    """How many decimals `amount` is written with ("2.50" -> 2, "3" -> 0); 0 for non-finite."""
    exponent = amount.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def money_str(amount: Decimal) -> str:
    """The API form of an amount: a plain string with two decimals ("529.00", "-310.00")."""
    return f"{to_cents(amount):.2f}"


def dollars(amount: Decimal) -> str:
    """The buyer-facing form of an amount: "$1,499.00"; negative amounts keep their sign in front."""
    value = to_cents(amount)
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def count(n: int) -> str:
    """A whole number as a buyer reads it: 4800 -> "4,800"."""
    return f"{n:,}"
