"""The channels: one module per channel (the REST API, web chat, Twilio messaging, the Slack CSM
lane), each verifying, parsing, rendering and sending for its medium and declaring what it can
do (core.channels.Capabilities). `create_app` registers them in a loop (`CHANNEL_MODULES`)."""

from __future__ import annotations

from core.channels import Channels


def registered() -> Channels:
    """Every medium the registered channel modules declare, as the core sees them."""
    from channels.api import VOICE
    from channels.twilio_messaging import SMS, WHATSAPP
    from channels.webchat import WEB

    return Channels([WEB, WHATSAPP, SMS, VOICE])
