"""Values of every shape for the parsers: text with NULs, lone surrogates, control and
right-to-left characters, huge values, numbers past every column, JSON of any type and depth."""

from __future__ import annotations

from hypothesis import strategies as st

# Characters: any code point, lone surrogates included, and the ones that break things most.
CHARACTERS = st.one_of(
    st.characters(codec=None),
    st.characters(categories=["Cs"]),  # lone UTF-16 surrogates
    st.sampled_from("\x00\x1c\x85\t\r\n \u00a0\u2028\u202e\ufeff\ufffd\U0001f44d\\\"'<>&%+="),
)

SPECIAL = st.sampled_from([
    "", " ", "\x00", "a\x00b", "\ud800", "\udfff", "\x1c", "null", "None", "true", "0", "-1",
    "1e309", "NaN", "Infinity", "9" * 40, "%00", "%zz", "../../etc/passwd", "<Response/>",
    "]]>", "&amp;", "{{7*7}}", "${jndi:x}", "'; DROP TABLE accounts; --", "STOP", "START",
    "HELP", "yes", "confirm", "no", "person", "whatsapp:", "whatsapp:+", "+", "+1",
    "+13125550142", "whatsapp:+13125550142", "(312) 555-0142", "\u202e\u0661\u0662",
])


def huge(min_size: int = 1_000, max_size: int = 100_000):
    """A long string, made by repetition (hypothesis draws it cheaply)."""
    return st.builds(lambda piece, n: piece * n, st.text(CHARACTERS, min_size=1, max_size=4),
                     st.integers(min_size // 4 + 1, max_size // 4))


# What a database or a parser is likeliest to choke on, inside otherwise ordinary text.
POISON = st.builds(lambda before, bad, after: before + bad + after, st.text(max_size=8),
                   st.sampled_from(["\x00", "\ud800", "\udfff", "\x1c", "\ufeff", "\u2028"]),
                   st.text(max_size=8))


def text(max_size: int = 40):
    """Text of every shape, now and then a huge one."""
    return st.one_of(SPECIAL, POISON, POISON, st.text(CHARACTERS, max_size=max_size),
                     st.text(max_size=max_size), huge())


# Ordinary text (no control characters, no lone surrogates): what gets past the edge to the core.
PLAIN = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)


def words():
    """Mostly ordinary text, sometimes text of every shape."""
    return mostly(PLAIN, text(), tenths=7)


INTEGERS = st.one_of(st.integers(-10, 10), st.integers(-2**70, 2**70),
                     st.sampled_from([2**31, 2**63 - 1, 2**63, -2**63 - 1, 10**12, 10**12 + 1]))
NUMBERS = st.one_of(INTEGERS, st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([0.5, 1.0, -0.0, 1e308, 5e-324, 4.00001]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, text())


def json_values(max_leaves: int = 12):
    """Any JSON value (keys of every shape too)."""
    return st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(text(12), inner, max_size=4)),
        max_leaves=max_leaves)


def either(*strategies):
    """One of `strategies`, each as often as the others (st.one_of favours the first)."""
    return st.sampled_from(strategies).flatmap(lambda strategy: strategy)


def mostly(usual, *unusual, tenths: int = 8):
    """`usual` about `tenths` times in ten, else one of `unusual`."""
    # (sampled_from draws its items evenly; integers(0, 9) would favour its ends)
    return st.sampled_from([True] * tenths + [False] * (10 - tenths)).flatmap(
        lambda take: usual if take else st.one_of(*unusual))


def maybe(strategy, *alternatives):
    """Mostly `strategy`, sometimes any JSON value or one of `alternatives` (values or
    strategies), sometimes absent (the returned ABSENT is dropped by `drop_absent`)."""
    others = [a if isinstance(a, st.SearchStrategy) else st.just(a) for a in alternatives]
    return mostly(strategy, json_values(4), st.just(ABSENT), *others, tenths=9)


ABSENT = object()


def objects(fields: dict, tenths: int = 8):
    """A dict of `fields` (name: strategy); about `tenths` times in ten as drawn, otherwise with
    one field dropped, set to any JSON value, or joined by an unknown one."""
    @st.composite
    def build(draw):
        obj = {name: draw(strategy) for name, strategy in fields.items()}
        if draw(st.sampled_from([True] * tenths + [False] * (10 - tenths))):
            return drop_absent(obj)
        key = draw(st.sampled_from(sorted(fields)) | text(12))
        obj[key] = draw(st.one_of(st.just(ABSENT), json_values(4)))
        return drop_absent(obj)
    return build()


def drop_absent(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if v is not ABSENT}
