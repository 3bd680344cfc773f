"""The channels: one module per channel — the REST API (`api`), web chat (`webchat`), Twilio
messaging, SMS and WhatsApp (`twilio_messaging`, sending in `twilio_outbound`), Twilio voice
calls (`twilio_voice`), and the Slack CSM lane (`slack`). Each verifies, parses, renders and sends for its medium, calls the core's use
cases, declares what its media can do (core.channels.Capabilities) and exposes one `CHANNEL`
that `create_app` registers in a loop (`modules()`). Channels import no storage and no app.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from core.channels import Capabilities, Channels
from core.delivery import MessageSender


@dataclass(frozen=True)
class Installed:
    """What installing a channel gives the outbox: senders by job kind (a job kind has one
    sender), and senders of queued messages by medium (core.delivery.MessageJobs)."""

    jobs: Mapping[str, Any] = field(default_factory=dict)
    messages: Mapping[str, MessageSender] = field(default_factory=dict)


@dataclass(frozen=True)
class Channel:
    """What a channel module gives the app: the media it reaches buyers on, and `install(app,
    runtime)`, which registers its routes and returns its senders."""

    name: str
    media: tuple[Capabilities, ...]
    install: Callable[[Flask, Any], Installed]


def modules() -> tuple[Channel, ...]:
    """Every channel, in the order the app registers them."""
    from channels import api, console, slack, twilio_messaging, twilio_voice, webchat

    return (webchat.CHANNEL, twilio_messaging.CHANNEL, twilio_voice.CHANNEL, api.CHANNEL,
            slack.CHANNEL, console.CHANNEL)


def registered() -> Channels:
    """Every medium the channels declare, as the core sees them."""
    return Channels(medium for channel in modules() for medium in channel.media)
