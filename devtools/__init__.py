"""Pages and data for trying the service on this machine: the sandbox phone, the demo host page
with the widget, the stand-in for Slack, the demo accounts, and the guard that keeps them to this
machine. Registered only in sandbox mode (no Twilio account configured)."""

from __future__ import annotations

from flask import Flask


def install(app: Flask) -> None:
    """Register the sandbox's pages (sandbox mode only): the buyer's phone and its calls, the
    demo host page, and the CSM lane's stand-in when no Slack workspace is configured."""
    from channels.slack import configured
    from devtools import call_panel, csm_page, demo_page, sandbox

    app.register_blueprint(sandbox.bp)
    app.register_blueprint(call_panel.bp)
    app.register_blueprint(demo_page.bp)
    if not configured(app.config):
        app.register_blueprint(csm_page.bp)
