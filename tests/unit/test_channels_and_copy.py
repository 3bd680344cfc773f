"""Channels are told apart by what they declare (core.channels), and buyer-facing text says how
to act in the channel's own terms (core.copy): the widget's Confirm button, SMS keywords, a
phone keypad. Shared code never compares a channel's name."""

import ast
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from channels.twilio_messaging import SMS, WHATSAPP
from channels.webchat import WEB
from core.case import AccountTerms, current_case
from core.channels import Capabilities, Channels, Delivery, Input
from core.conversation import Business, ThreadState, confirmation_step, help_message, options, reply
from core.copy import BUTTONS, KEYPAD, KEYWORDS, wording
from core.errors import DomainError
from core.intents import Intent
from core.ports import ContactView
from core.usage import UsageMatrix

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[2]
BIZ = Business("Acme Billing", "help@acme.example")
REGISTERED = Channels([WEB, WHATSAPP, SMS])
VOICE = Capabilities("voice", Input.KEYPAD, Delivery.PUSH, address=("phone",), phone=True)


def contact(web_active_at=None, whatsapp=None, phone=None, web_user_id="u1"):
    return ContactView(id=1, account_id=1, external_id="c", role="billing", phone=phone,
                       whatsapp=whatsapp, web_user_id=web_user_id, web_active_at=web_active_at,
                       opted_out_at=None, whatsapp_opt_in_at=NOW if whatsapp else None)


@pytest.mark.parametrize("who, channel", [
    (contact(NOW - timedelta(minutes=5), "+13125550142", "+13125550142"), "web"),
    (contact(NOW - timedelta(minutes=15), "+13125550142", "+13125550142"), "whatsapp"),
    (contact(None, None, "+13125550142"), "sms"),
    (contact(None, None, None), "web"),  # the opening waits for the next visit
    (contact(None, None, None, web_user_id=None), "web"),
])
def test_the_opening_goes_to_the_best_channel_by_what_channels_declare(who, channel):
    assert REGISTERED.choose(who, NOW).name == channel


def test_a_whatsapp_number_without_opt_in_is_not_written_to_first():
    who = ContactView(id=1, account_id=1, external_id="c", role="billing", phone="+13125550142",
                      whatsapp="+13125550199", web_user_id=None, web_active_at=None,
                      opted_out_at=None, whatsapp_opt_in_at=None)
    assert REGISTERED.choose(who, NOW).name == "sms"
    assert WHATSAPP.address_of(who) is None


def test_a_new_channel_is_a_declaration_not_a_branch():
    """A pushed channel registered beside the others is chosen by its declared rank."""
    phone_only = contact(None, None, "+13125550142")
    assert Channels([WEB, SMS, VOICE]).choose(phone_only, NOW).name == "sms"  # SMS ranks first
    preferred = Capabilities("voice", Input.KEYPAD, Delivery.PUSH, address=("phone",), rank=0)
    assert Channels([WEB, SMS, preferred]).choose(phone_only, NOW).name == "voice"
    assert REGISTERED.require("sms") is SMS
    with pytest.raises(DomainError) as err:
        REGISTERED.require("voice")
    assert err.value.code == "unknown_channel"


def test_a_channel_registered_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        Channels([SMS, SMS])


@pytest.fixture(scope="module")
def case(catalog):
    terms = AccountTerms("starter", "generic", "America/Chicago", 5, NOW - timedelta(days=400))
    usage = UsageMatrix(messages=5200, seats=6, integrations=2)
    built = current_case(catalog, terms, usage, NOW)
    assert built is not None and built.direction == "up"
    return built


def test_the_confirmation_step_says_how_to_confirm_in_each_channels_terms(catalog, case):
    assert confirmation_step(case, catalog, wording(SMS)).endswith("Reply CONFIRM to upgrade.")
    assert confirmation_step(case, catalog, wording(WEB)).endswith("Press Confirm to upgrade.")
    assert confirmation_step(case, catalog, wording(VOICE)).endswith("Press 1 to upgrade.")


def test_a_widget_user_is_never_told_to_reply_confirm(catalog, case):
    turn = reply(ThreadState.OFFERED, Intent.AFFIRM, "yes", case, catalog, BIZ, channel=WEB)
    assert "Press Confirm" in turn.replies[0] and "CONFIRM" not in turn.replies[0]
    turn = reply(ThreadState.AWAITING_CONFIRMATION, Intent.AFFIRM, "ok", case, catalog, BIZ,
                 channel=WEB)
    assert "Press Confirm" in turn.replies[0] and "reply" not in turn.replies[0].lower()


def test_a_caller_is_told_which_key_to_press(catalog, case):
    text = options(ThreadState.OFFERED, case, BIZ, w=KEYPAD)
    assert text.startswith("Press 1 to see what it takes")
    assert "press 3 if not now, press 2 for your account manager" in text
    assert "press 9 to opt out" in help_message(BIZ, case, w=KEYPAD)


def test_sms_keeps_its_keywords(catalog, case):
    text = options(ThreadState.OFFERED, case, BIZ, w=KEYWORDS)
    assert text.startswith("Reply YES to see what it takes") and "NO if not now, PERSON for" in text
    assert options(ThreadState.OFFERED, case, BIZ, w=BUTTONS).startswith("Type YES to see")


# Names of channels, as they would appear in a comparison.
CHANNEL_NAMES = {"web", "sms", "whatsapp", "voice"}


def _compared_names(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                values = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                for value in values:
                    if isinstance(value, ast.Constant) and value.value in CHANNEL_NAMES:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {value.value!r}")
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "in_":
            for arg in node.args:
                for value in (arg.elts if isinstance(arg, (ast.Tuple, ast.List)) else [arg]):
                    if isinstance(value, ast.Constant) and value.value in CHANNEL_NAMES:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {value.value!r}")
    return found


def test_no_channel_name_is_compared_in_core_or_storage():
    found = [hit for package in ("core", "storage")
             for path in sorted((ROOT / package).rglob("*.py")) for hit in _compared_names(path)]
    assert found == []


def test_the_check_finds_a_comparison():
    probe = ROOT / "tests" / "unit" / "_probe_channel_compare.py"
    probe.write_text('def f(c):\n    return c == "whatsapp" or c in ("sms", "x")\n')
    try:
        assert len(_compared_names(probe)) == 2
    finally:
        probe.unlink()


def test_a_widget_user_is_offered_only_what_the_widget_can_do(catalog, case):
    """A correction in the confirmation step names the Confirm button, then says to type PERSON
    (there is no PERSON button), and the opening's last line never says "reply" in the widget."""
    from decimal import Decimal

    from core.conversation import wrong_amount_answer
    from core.framing import opening_message

    text = wrong_amount_answer(case, Decimal("399"), ThreadState.AWAITING_CONFIRMATION, BUTTONS)
    assert "Press Confirm to go ahead" in text and "or type PERSON to talk" in text
    assert opening_message(case, catalog, "Beacon", KEYWORDS).endswith(
        "Reply YES for details, STOP to opt out.")
    assert opening_message(case, catalog, "Beacon", KEYPAD).endswith(
        "Press 1 for details, press 9 to opt out.")


def test_a_message_on_a_channel_without_a_sender_fails_instead_of_going_out_elsewhere():
    from core.delivery import MessageJobs
    from core.jobs import OutboxJob, Settle

    class Facts:
        def message_facts(self, ids):
            from core.ports import MessageFacts
            return {1: MessageFacts(id=1, status="queued", channel="whatsapp", kind="reply",
                                    body="Hi", thread_id=None, thread_state=None, account_id=3,
                                    contact_id=5, opted_out=False, whatsapp_opt_in_at=NOW,
                                    phone="+13125550142", whatsapp="+13125550142",
                                    whatsapp_inbound_at=None)}

    class Uow:
        outbox = Facts()

    jobs = MessageJobs({"sms": object()}, REGISTERED)  # a sender for SMS only
    prepared = jobs.prepare(Uow(), [OutboxJob(7, "message", "message:1", {"message_id": 1}, 1)],
                            NOW)
    assert prepared == {7: Settle("failed", "no sender is registered for whatsapp")}
