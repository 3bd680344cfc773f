"""The audit trail: who read or changed what, when, from where, and how it ended.

Every operator surface writes one event per request or command (the API, Slack, the CLI, the
sandbox's local pages): the actor (an API key's fingerprint, a Slack user id, the operating
system's user), the source (api, slack, cli, sandbox) and the peer address where there is one,
the action ("account.read", "plan.change", "contacts.erase", ...), the object (its type and id),
the outcome (ok, denied, failed, error) and a few counts. Denials are events too: a request with a
wrong key is recorded before it is refused.

The trail is append-only and hash-chained: event n stores the hash of event n-1 and its own hash
over both (`chain_hash`), and its sequence number is n, so a deleted event leaves a gap and an
edited one no longer matches its hash (`verify`). The database refuses UPDATE and DELETE on the
table (a trigger); the chain catches what a trigger cannot (someone with the database's owner
rights). Exported hashes kept elsewhere catch a rewritten chain: the last hash is an anchor.

Events name contacts by `pseudonym` (an operator's contact id may be an email), accounts by
their external id, and hold no message text, number or name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum

GENESIS = "0" * 64  # the hash before the first event


class Outcome(StrEnum):
    OK = "ok"  # done (2xx, 3xx; a command that finished)
    DENIED = "denied"  # no or bad credentials, not allowed (401, 403)
    FAILED = "failed"  # refused as asked: invalid, unknown, conflicting (other 4xx)
    ERROR = "error"  # our failure (5xx, a command that crashed)

    @classmethod
    def of_status(cls, status: int) -> Outcome:
        if status in (401, 403):
            return cls.DENIED
        if status >= 500:
            return cls.ERROR
        return cls.FAILED if status >= 400 else cls.OK


@dataclass(frozen=True)
class AuditEvent:
    """One read or change, as its surface saw it. `detail`: counts and codes, never text a
    buyer wrote."""

    at: datetime
    actor: str
    source: str
    action: str
    object_type: str
    object_id: str
    outcome: Outcome
    address: str | None = None
    detail: Mapping[str, str | int | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The actor and the object come from requests (a Slack user id, a path's account id):
        # one the trail cannot keep as it is is kept as its pseudonym (`recordable`).
        object.__setattr__(self, "actor", recordable(self.actor, MAX_ACTOR))
        object.__setattr__(self, "object_id", recordable(self.object_id, MAX_OBJECT_ID))
        if self.address is not None:
            object.__setattr__(self, "address", recordable(self.address, MAX_ADDRESS))


# The longest actor, object id and address an event keeps (the trail's columns).
MAX_ACTOR, MAX_OBJECT_ID, MAX_ADDRESS = 200, 300, 64


def recordable(value: str, limit: int) -> str:
    """`value`, or its pseudonym when it is longer than `limit` or holds what no text column can
    (a NUL, a lone surrogate): a request with a hostile id is on the record all the same, under
    a name that is the same every time."""
    if len(value) <= limit and "\x00" not in value and not any(
            "\ud800" <= c <= "\udfff" for c in value):
        return value
    return pseudonym(value)


@dataclass(frozen=True)
class StoredAuditEvent:
    seq: int
    event: AuditEvent
    prev_hash: str
    hash: str

    def json(self) -> dict[str, object]:
        """The export's line: every field, the object's id by name, the chain's hashes."""
        e = self.event
        return {"seq": self.seq, "at": _iso(e.at), "actor": e.actor, "source": e.source,
                "address": e.address, "action": e.action, "object_type": e.object_type,
                "object_id": e.object_id, "outcome": str(e.outcome), "detail": dict(e.detail),
                "prev_hash": self.prev_hash, "hash": self.hash}


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


def chain_hash(prev_hash: str, seq: int, event: AuditEvent) -> str:
    """SHA-256 over the previous hash, the sequence number and every field, in canonical JSON
    (sorted keys, UTC times to the microsecond): recomputable by anyone from the export."""
    canonical = json.dumps(
        [prev_hash, seq, _iso(event.at), event.actor, event.source, event.address, event.action,
         event.object_type, event.object_id, str(event.outcome), dict(event.detail)],
        sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Verification:
    """What `verify` found: how many events it checked, the last hash (an anchor to keep
    elsewhere), and the first break (its sequence number and why) or None."""

    events: int
    last_hash: str
    broken_at: int | None = None
    reason: str | None = None

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify(events: Iterable[StoredAuditEvent], *, after: tuple[int, str] = (0, GENESIS)
           ) -> Verification:
    """Check the chain from `after` (sequence number and hash of the event before; the start by
    default): consecutive numbers, each event's prev_hash is the hash before it, each hash
    recomputes from the event."""
    seq, prev = after
    count = 0
    for stored in events:
        count += 1
        if stored.seq != seq + 1:
            return Verification(count, prev, seq + 1,
                                f"events {seq + 1}..{stored.seq - 1} are missing")
        if stored.prev_hash != prev:
            return Verification(count, prev, stored.seq, "does not follow the event before it")
        if chain_hash(prev, stored.seq, stored.event) != stored.hash:
            return Verification(count, prev, stored.seq, "was changed after it was written")
        seq, prev = stored.seq, stored.hash
    return Verification(count, prev)


def pseudonym(value: str) -> str:
    """A stable stand-in for an identifier that may be personal (a contact id that is an email):
    the same value always gives the same pseudonym, so events about one contact can be found
    (`flask --app app audit export --contact <id>` computes it), yet the trail holds no email."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
