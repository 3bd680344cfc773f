"""What a channel can do, declared by the channel; the core decides from these, never from names.

Each channel module (channels/webchat.py, channels/twilio_messaging.py, ...) declares one
`Capabilities` per medium it serves, and the application hands the registered ones to the core
(`core.handlers.Settings.channels`). Shared code asks a channel's capabilities ("are queued
messages pushed or pulled?", "do quiet hours apply?", "how does the buyer answer: buttons,
keywords or a keypad?") and never compares a channel's name: a new channel is a new declaration,
not a new branch.

A contact's addresses are read by the attribute names a channel declares (`address`, `opt_in`,
`activity` name fields of core.ports.ContactView), so reaching a buyer on a new channel needs no
code here either.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from core.errors import DomainError


class Input(StrEnum):
    """How the buyer answers: the words buyer-facing text uses to say so (core.copy)."""

    KEYWORDS = "keywords"  # typed text: "reply CONFIRM" (SMS, WhatsApp)
    BUTTONS = "buttons"  # buttons beside a text box: "press Confirm" (the web widget)
    KEYPAD = "keypad"  # a phone keypad or speech: "press 1" (voice)


class Delivery(StrEnum):
    """How a message queued for later reaches the buyer."""

    PUSH = "push"  # a sender delivers it from the outbox (a text, a call)
    POLL = "poll"  # the buyer's client fetches it on its next poll (the widget)
    NONE = "none"  # we never deliver here: buyer messages only arrive relayed (the API)


# The buyer counts as present on a polled channel for this long after their last poll.
PRESENT_FOR = timedelta(minutes=10)


@dataclass(frozen=True)
class Capabilities:
    """One channel (medium) as the core sees it.

    - `name`: the label stored on messages and threads ("sms"), the registry's key.
    - `input`, `delivery`: see `Input`, `Delivery`. A polled channel is chosen for an opening
      while the buyer is present on it (active within PRESENT_FOR), and as a last resort when
      no pushed channel reaches them (the opening waits for the next visit).
    - `address`: the contact fields that reach the buyer here, first present wins
      (WhatsApp: its own number, else the phone).
    - `opt_in`: a contact field that must be set before we write first (WhatsApp's opt-in).
    - `activity`: the contact field recording the buyer's last message or visit here (the
      widget's presence, WhatsApp's 24-hour session).
    - `session_window`: free text only this long after the buyer's last message; outside it an
      approved template (WhatsApp).
    - `phone`: the buyer's phone number: quiet hours apply to openings, consent is given and
      revoked by keyword (STOP/START) and every opening names the business and how to stop.
    - `max_chars`: the longest message the medium takes (None: no limit we enforce).
    - `rank`: preference among pushed channels when choosing where to open (lower first).
    - `rings`: the medium places the calls buyers ask for ("call me": core.calls).
    """

    name: str
    input: Input
    delivery: Delivery
    address: tuple[str, ...]
    opt_in: str | None = None
    activity: str | None = None
    session_window: timedelta | None = None
    phone: bool = False
    max_chars: int | None = None
    rank: int = 100
    rings: bool = False

    def address_of(self, contact: Any) -> str | None:
        """The contact's address on this channel, or None (no opt-in where one is needed)."""
        if self.opt_in is not None and getattr(contact, self.opt_in, None) is None:
            return None
        for attribute in self.address:
            value = getattr(contact, attribute, None)
            if value:
                return str(value)
        return None

    def present(self, contact: Any, now: datetime) -> bool:
        """A polled channel the buyer is on now (their client polled within PRESENT_FOR)."""
        if self.delivery != Delivery.POLL or self.activity is None or not self.address_of(contact):
            return False
        seen = getattr(contact, self.activity, None)
        return seen is not None and now - seen <= PRESENT_FOR


class Channels:
    """The registered channels by name (what `create_app` registered)."""

    def __init__(self, channels: Iterable[Capabilities] = ()) -> None:
        self._by_name: dict[str, Capabilities] = {}
        for channel in channels:
            if channel.name in self._by_name:
                raise ValueError(f"channel {channel.name!r} is registered twice")
            self._by_name[channel.name] = channel

    def __iter__(self) -> Iterator[Capabilities]:
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str | None) -> Capabilities | None:
        return self._by_name.get(name) if name is not None else None

    def require(self, name: str) -> Capabilities:
        """The channel called `name`; a DomainError (`unknown_channel`) for any other."""
        channel = self._by_name.get(name)
        if channel is None:
            raise DomainError(f"channel must be one of {', '.join(self._by_name)}, got {name!r}",
                              code="unknown_channel", field="channel")
        return channel

    def names(self, *, deliverable: bool = False) -> tuple[str, ...]:
        """The registered channels' names (`deliverable`: those we can deliver on)."""
        return tuple(c.name for c in self if not deliverable or c.delivery != Delivery.NONE)

    def choose(self, contact: Any, now: datetime) -> Capabilities | None:
        """Where to open a conversation with `contact`: a polled channel they are on now; else
        the best-ranked pushed channel that reaches them; else a polled channel, where the
        opening waits for their next visit. None when no channel is registered."""
        polled = [c for c in self if c.delivery == Delivery.POLL]
        for channel in polled:
            if channel.present(contact, now):
                return channel
        pushed = sorted((c for c in self if c.delivery == Delivery.PUSH and c.address_of(contact)),
                        key=lambda c: c.rank)
        if pushed:
            return pushed[0]
        reachable = [c for c in polled if c.address_of(contact)]
        fallback = reachable or polled
        return fallback[0] if fallback else None

