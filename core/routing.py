"""Which account a message from a shared phone number belongs to.

Contacts of several accounts may have the same number (one bookkeeper for two clinics, a shop
owner with two businesses, the front desk of a shared office, a typo). A message from such a
number must never be acted on in a guessed account: a "confirm" must confirm the offer the buyer
means, or nothing. `route` decides, from what storage knows about the candidates (the contacts
with that number on that medium) and about the last message we sent to that number on that
medium; it is pure, and core.handlers carries the decision out (`core.handlers.handle_inbound`).

The rule, in order (docs/architecture.md, "Which account a message belongs to"):

1. One business (every candidate in one account): that one.
2. The text names exactly one candidate's business (its name, or a word of the name no other
   candidate's name has): that one.
3. Our last message on this medium to this number was a reply in one business's conversation
   (the thread the buyer's messages land in; outside any thread when it has none): the buyer is
   talking with that business, nobody else wrote since, so the conversation goes on there.
4. Two or more businesses have a live thread (open, offered, awaiting confirmation): ASK.
5. One live thread: its business, when our last word here was its opening or nothing was ever
   sent here; when it was another business's opening (an offer that ended unanswered), ASK:
   the buyer may answer either, and a yes moves whichever it lands in.
6. No live thread: the business that last wrote here (the latest thing the buyer got); nobody
   wrote: ASK (a finished thread can still move, "actually, yes" reopens a declined offer; a
   buyer without a thread gets one when a plan change applies to their account; a request for
   a person escalates: none of it may happen in a guessed account).

STOP and START are not routed: they apply to every candidate (the handler's rule), and HELP is
answered whatever the route.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Candidate:
    """A contact with the sender's number on the sender's medium, as routing sees it.

    `thread_id` is the thread a message from this contact lands in (the handler's rule: a live
    thread addressed to them, else their latest, else their account's live thread); `live` says
    whether that thread is open, offered or awaiting confirmation.
    """

    contact_id: int
    account_id: int
    account_name: str
    thread_id: int | None
    live: bool


@dataclass(frozen=True)
class LastWrite:
    """Our latest message on this medium to this number that reached the buyer: whose contact,
    in which thread (None: outside any thread), an opening or a reply."""

    contact_id: int
    thread_id: int | None
    kind: str  # opening | reply


class Reason(enum.StrEnum):
    ONLY = "only"  # one business has this number
    NAMED = "named"  # the text names it
    TALKING = "talking"  # our last word here was a reply in its conversation
    LAST_WRITER = "last_writer"  # its opening was our last word here; no other offer is live
    ONLY_LIVE = "only_live"  # nobody wrote on this medium; its offer is the only one live
    ASK = "ask"


@dataclass(frozen=True)
class Route:
    """Answer as `contact_id`, or (None) ask which business with `question`."""

    contact_id: int | None
    reason: Reason
    question: str | None = None
    business: str | None = None  # the chosen account's name


# Words of a business name that say nothing about which business it is, and words buyers write
# for other reasons: never enough, alone, to name a business. The full name still names it.
GENERIC_WORDS = frozenset("""
    a an and the of for at by in on to my our your
    co company companies corp corporation inc incorporated llc llp ltd limited plc gmbh ag sa sas
    bv nv pty pc pllc group holdings holding partners partner associates services service
    solutions international global team enterprises enterprise industries
    yes no ok okay confirm stop start help cancel please thanks thank
""".split())
# What may surround a bare name in an answer to "which business?" ("it's Demo Co", "about
# Harbor Realty please"): the message then only names the business.
NAME_FILLERS = frozenset("""
    a an the it its s is was this that these about for re regarding from at with of on
    behalf i im m am we are our my account business company one please pls plz thanks
    thank you ok okay oh sorry here hi hello hey meant mean means just
""".split())
# The kind of the messages of a shared number that belong to no one account's conversation: the
# buyer's message we could not place and our question, HELP answered before knowing, a STOP or
# START applied to every candidate. Kept for the operator and the sandbox phone; never counted
# as a business's last word (routing) and never shown in one account's web chat.
UNROUTED = "unrouted"
SHORT_ANSWER = 4  # words: a reply that names a business by one word of its name
MIN_DISTINCTIVE = 3  # letters; "IT" in "Northwind IT" is a word buyers write for other reasons

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The text's words, case-folded (letters and digits; punctuation separates)."""
    return _WORD.findall(text.casefold())


def _contains(seq: Sequence[str], part: Sequence[str]) -> bool:
    n = len(part)
    return n > 0 and any(list(seq[i:i + n]) == list(part) for i in range(len(seq) - n + 1))


@dataclass(frozen=True)
class _Business:
    account_id: int
    name: str
    members: tuple[Candidate, ...]  # by contact id

    @property
    def live(self) -> bool:
        return any(c.live for c in self.members)



def _businesses(candidates: Iterable[Candidate]) -> list[_Business]:
    by_account: dict[int, list[Candidate]] = {}
    for c in sorted(candidates, key=lambda c: c.contact_id):
        by_account.setdefault(c.account_id, []).append(c)
    return [_Business(account_id, members[0].account_name, tuple(members))
            for account_id, members in sorted(by_account.items(),
                                              key=lambda item: item[1][0].contact_id)]


def _representative(business: _Business, last: LastWrite | None) -> Candidate:
    """Which of a business's candidates to answer as: the one we last wrote to, else one whose
    message lands in a live thread, else the first."""
    for c in business.members:
        if last is not None and c.contact_id == last.contact_id:
            return c
    for c in business.members:
        if c.live:
            return c
    return business.members[0]


def named_businesses(text: str, names: Sequence[str],
                     ignore: Iterable[str] = ()) -> list[int]:
    """The indexes of the business `names` the text names: the whole name (as consecutive words,
    case-insensitive), or, in a short answer (SHORT_ANSWER words at most), a distinctive word of
    it (three letters or more, not generic, not in `ignore` — plan names, say — and in no other
    name). A name inside a longer name that is also
    named ("Acme" in "Acme Dental") does not count."""
    said = words(text)
    said_set = set(said)
    name_words = [words(n) for n in names]
    skip = GENERIC_WORDS | {w.casefold() for w in ignore}
    hits: dict[int, bool] = {}  # index -> named by its whole name
    for i, mine in enumerate(name_words):
        others = set().union(*(set(w) for j, w in enumerate(name_words) if j != i))
        distinctive = {w for w in mine
                       if len(w) >= MIN_DISTINCTIVE and w not in skip and w not in others}
        if _contains(said, mine):
            hits[i] = True
        elif distinctive & said_set and len(said) <= SHORT_ANSWER:
            # One word of a name names the business only in a short answer ("harbor", "it's
            # demo"): in a sentence it is a word ("is there a demo video?"), not a choice.
            hits[i] = False
    wholes = [i for i, whole in hits.items() if whole]
    shadowed = {i for i in wholes for j in wholes
                if i != j and len(name_words[i]) < len(name_words[j])
                and _contains(name_words[j], name_words[i])}
    return sorted(i for i in hits if i not in shadowed)


def only_names(text: str, name: str) -> bool:
    """True when the text says nothing but the business's name (with fillers such as "it's" or
    "about"): an answer to "which business?", not a message for the business's thread."""
    mine = set(words(name))
    rest = [w for w in words(text) if w not in mine]
    return bool(mine & set(words(text))) and all(w in NAME_FILLERS for w in rest)


def says_whole_name(text: str, name: str) -> bool:
    """True when the text has the business's whole name (its words in order), not just a word
    of it: "harbor realty", not "harbor"."""
    return _contains(words(text), words(name))


def without_name(text: str, name: str) -> str:
    """The text with every word of the business's name taken out (to read the rest of it)."""
    mine = sorted(set(words(name)), key=len, reverse=True)
    if not mine:
        return text
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in mine) + r")\b",
                         re.IGNORECASE)
    return re.sub(r"\s+", " ", pattern.sub(" ", text)).strip()


def join_names(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def which_business(names: Iterable[str]) -> str:
    """The question asked when a message cannot be placed."""
    ordered = sorted(set(names), key=lambda n: (n.casefold(), n))
    return (f"This number gets messages about more than one account: {join_names(ordered)}. "
            f"Which business is this about? Reply with its name.")


def route(candidates: Sequence[Candidate], last: LastWrite | None, text: str, *,
          ignore: Iterable[str] = ()) -> Route:
    """Whose conversation a message from a number shared by `candidates` belongs to (the rule in
    this module's docstring). `last`: our latest message on this medium to this number that
    reached the buyer (None: none). `ignore`: words that never name a business alone (the
    catalog's plan names: "yes to growth" must not pick "Growth Partners")."""
    if not candidates:
        raise ValueError("route needs at least one candidate")
    businesses = _businesses(candidates)

    def to(business: _Business, reason: Reason) -> Route:
        return Route(_representative(business, last).contact_id, reason, business=business.name)

    if len(businesses) == 1:
        return to(businesses[0], Reason.ONLY)
    named = named_businesses(text, [b.name for b in businesses], ignore)
    if len(named) == 1:
        return to(businesses[named[0]], Reason.NAMED)
    writer = None
    if last is not None:
        writer = next((b for b in businesses
                       if any(c.contact_id == last.contact_id for c in b.members)), None)
    if writer is not None and last is not None and last.kind == "reply" and \
            _representative(writer, last).thread_id == last.thread_id:
        return to(writer, Reason.TALKING)
    live = [b for b in businesses if b.live]
    if len(live) == 1:
        if writer is live[0]:
            return to(writer, Reason.LAST_WRITER)
        if writer is None:
            return to(live[0], Reason.ONLY_LIVE)
    elif not live and writer is not None:
        return to(writer, Reason.LAST_WRITER)
    return Route(None, Reason.ASK, which_business(b.name for b in businesses))
