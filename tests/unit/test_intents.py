"""The intent classifier (§6): opt-outs first, explicit confirmations only, negation, typos."""

import pytest

from core.intents import (
    HELP_KEYWORDS,
    START_KEYWORDS,
    STOP_KEYWORDS,
    DeclineReason,
    Intent,
    classify,
    decline_reason,
)
from scripts.eval_intents import DEFAULT_SET, evaluate, keyword_variants, load, shipped_model

CARRIER_STOP_KEYWORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                         "REVOKE"}


def test_the_keyword_sets_are_the_carrier_ones_and_yes_is_not_a_start_keyword():
    assert STOP_KEYWORDS == CARRIER_STOP_KEYWORDS
    assert START_KEYWORDS == {"START", "UNSTOP"}
    assert HELP_KEYWORDS == {"HELP", "INFO"}


@pytest.mark.parametrize("keyword", sorted(CARRIER_STOP_KEYWORDS))
@pytest.mark.parametrize("shape", ["{}", "{}.", "{}!!", "  {}  ", "{}?", "'{}'", "{} 🛑",
                                   "🛑 {}", "{} please", "please {}", "{}\n"])
@pytest.mark.parametrize("case", [str.upper, str.lower, str.title])
def test_every_carrier_opt_out_keyword_alone_is_stop_in_any_case_and_punctuation(
        keyword, shape, case):
    assert classify(shape.format(case(keyword))) is Intent.STOP


@pytest.mark.parametrize("text", [
    "please stop texting me", "stop messaging me", "don't text me anymore", "unsubscribe me",
    "remove me from this list", "leave me alone", "no more messages", "Take me off this list.",
    "do NOT contact me", "stop sending these", "quit messaging us", "STOP texting, I'll call you",
    "not interested. stop", "🛑🛑", "STOPPPP", "unsubscrib", "cancle",
])
def test_a_revocation_in_plain_words_is_stop(text):
    assert classify(text) is Intent.STOP


@pytest.mark.parametrize("text, intent", [
    ("can I stop the extra seat charges?", Intent.QUESTION_PRICE),
    ("when does the promo end", Intent.DISCOUNT),
    ("would growth end our overage fees?", Intent.QUESTION_PRICE),
    ("can i cancel the upgrade if we hate it", Intent.QUESTION_DOWNGRADE),
    ("we're cancelling our account", Intent.DECLINE),
])
def test_a_stop_family_word_inside_a_sentence_not_about_messages_is_not_stop(text, intent):
    assert classify(text) is intent


@pytest.mark.parametrize("text, intent", [
    ("START", Intent.START), ("Unstop.", Intent.START), ("resubscribe pls", Intent.START),
    ("yes", Intent.AFFIRM), ("YES", Intent.AFFIRM),
    ("help?", Intent.HELP), ("INFO", Intent.HELP), ("who's this", Intent.HELP),
    ("what is this??", Intent.HELP),
])
def test_start_and_help_keywords_and_a_bare_yes_is_never_start(text, intent):
    assert classify(text) is intent


TRICKY = [
    # negation flips an affirmative action
    ("no, don't upgrade us", Intent.DECLINE),
    ("nah not interested", Intent.DECLINE),
    ("I do not want this", Intent.DECLINE),
    ("do NOT upgrade", Intent.DECLINE),
    ("never", Intent.DECLINE),
    ("not confirming anything", Intent.DECLINE),
    ("don't confirm it yet", Intent.DECLINE),
    ("i cant confirm right now", Intent.DECLINE),
    ("yes, don't upgrade yet", Intent.DECLINE),
    ("sure, not today though", Intent.DECLINE),
    ("i will not confirm", Intent.DECLINE),
    ("please do not confirm", Intent.DECLINE),
    ("can I confirm later?", Intent.DECLINE),
    # phrases that only look negative
    ("no worries, upgrade us", Intent.AFFIRM),
    ("why not, go ahead", Intent.AFFIRM),
    ("not a problem, do it", Intent.AFFIRM),
    # typos and stretched words
    ("upgrde me", Intent.AFFIRM),
    ("how muhc is it", Intent.QUESTION_PRICE),
    ("discunt?", Intent.DISCOUNT),
    ("confirmd", Intent.CONFIRM),
    ("yesssss", Intent.AFFIRM),
    ("nooooo", Intent.DECLINE),
    ("prorrated?", Intent.QUESTION_PRORATION),
    ("downgrad later?", Intent.QUESTION_DOWNGRADE),
    # emoji
    ("👍🏽", Intent.AFFIRM),
    ("👎🏻 not for us", Intent.DECLINE),
    ("✅ confirm", Intent.CONFIRM),
    ("😂", Intent.UNKNOWN),
    # precedence between intents
    ("yes but how much would i pay today", Intent.QUESTION_PRORATION),
    ("no, just call me", Intent.CALLBACK),
    ("discount? if not, no", Intent.DISCOUNT),
    ("can someone call me about a discount", Intent.CALLBACK),
    ("I'd like to talk to someone about a discount", Intent.DISCOUNT),
    ("is there a discount if I confirm today?", Intent.DISCOUNT),
    ("what's included and how much?", Intent.QUESTION_FEATURES),
    ("ok, can I downgrade later if it doesn't work?", Intent.QUESTION_DOWNGRADE),
    ("yes please, call me", Intent.CALLBACK),
    ("before I confirm, is there a contract?", Intent.QUESTION_DOWNGRADE),
    ("confirm the price first", Intent.QUESTION_PRICE),
    ("confirm? what am I confirming", Intent.UNKNOWN),
    # explicit confirmations
    ("CONFIRM", Intent.CONFIRM),
    ("Confirm.", Intent.CONFIRM),
    ("yes I confirm the upgrade", Intent.CONFIRM),
    # requests
    ("talk to a human pls", Intent.HUMAN),
    ("is this a real person?", Intent.HUMAN),
    ("ring me", Intent.CALLBACK),
    ("can we do a call tmrw", Intent.CALLBACK),
    ("could we set up a quick call", Intent.CALLBACK),
    ("buzz me after lunch", Intent.CALLBACK),
    ("call around 4 pls", Intent.CALLBACK),
    ("gimme a ring", Intent.CALLBACK),
    ("would you telephone me", Intent.CALLBACK),
    ("no texts please, just call", Intent.CALLBACK),
    ("easier by phone tbh", Intent.CALLBACK),
    ("driving now, try me later", Intent.CALLBACK),
    ("we talked by phone yesterday", Intent.UNKNOWN),
    # the buyer will call: no call of ours is wanted
    ("I'll ring your team on monday", Intent.UNKNOWN),
    ("let me call my partner first", Intent.UNKNOWN),
    ("I'd love a quick call", Intent.CALLBACK),
    ("pls ring, easier than typing", Intent.CALLBACK),
    ("free after lunch, call then", Intent.CALLBACK),
    # "call" that asks for none: now that a callback books a real call, these must not
    ("had a call with your rep monday, thinking it over", Intent.UNKNOWN),
    ("call me old fashioned but I like paper invoices", Intent.UNKNOWN),
    ("sorry, on a phone call, will text back", Intent.UNKNOWN),
    ("what do you call the middle plan?", Intent.UNKNOWN),
    ("tough call, let me think", Intent.UNKNOWN),
    # declines with reasons
    ("we're closing our account next month", Intent.DECLINE),
    ("Not now, maybe in Q1", Intent.DECLINE),
    ("nope, too pricey", Intent.DECLINE),
    ("we don't use workflows", Intent.DECLINE),
    # questions
    ("is growth cheaper for us?", Intent.QUESTION_PRICE),
    ("does scale come with sso?", Intent.QUESTION_FEATURES),
    ("will I be billed the full amount today?", Intent.QUESTION_PRORATION),
    ("what if we want to go back down", Intent.QUESTION_DOWNGRADE),
    # nothing we know
    ("", Intent.UNKNOWN),
    ("   ", Intent.UNKNOWN),
    ("good afternoon", Intent.UNKNOWN),
    ("where's my invoice", Intent.UNKNOWN),
    ("see you at the end of the week", Intent.UNKNOWN),
]


@pytest.mark.parametrize("text, intent", TRICKY, ids=[t or "<empty>" for t, _ in TRICKY])
def test_tricky_replies_read_as_a_careful_human_would(text, intent):
    assert classify(text) is intent


# Phrasings of the readings the first held-out set missed, none of them a held-out line itself.
GENERALISED = [
    # help: why am I getting this, is it a scam, how do these messages work, who is sending it
    ("why do I keep getting these messages?", Intent.HELP),
    ("why are you texting me", Intent.HELP),
    ("why did I get this", Intent.HELP),
    ("is this a scam", Intent.HELP),
    ("are these texts legit?", Intent.HELP),
    ("scam?", Intent.HELP),
    ("how does this texting thing work", Intent.HELP),
    ("what are these messages about?", Intent.HELP),
    ("which company are you with?", Intent.HELP),
    ("what is upgrade chat", Intent.HELP),
    ("why am I getting charged $105?", Intent.QUESTION_PRORATION),
    ("we legit cannot afford this", Intent.DECLINE),
    ("is this a real person?", Intent.HUMAN),
    # features: a plan's limits, seats and users, what a plan comes with, a question about a plan
    ("can we add extra seats on scale?", Intent.QUESTION_FEATURES),
    ("what's the user limit on scale", Intent.QUESTION_FEATURES),
    ("is there a cap on messages with growth?", Intent.QUESTION_FEATURES),
    ("does scale have two-way whatsapp?", Intent.QUESTION_FEATURES),
    ("do we get more phone numbers on growth?", Intent.QUESTION_FEATURES),
    ("does growth come with a dedicated csm?", Intent.QUESTION_FEATURES),
    ("does growth include an account manager", Intent.QUESTION_FEATURES),
    ("what happens if i upgrade?", Intent.QUESTION_FEATURES),
    ("can I talk to my account manager about growth?", Intent.HUMAN),
    ("what would I pay on growth?", Intent.QUESTION_PRICE),
    ("what time does your support team close", Intent.UNKNOWN),
    # proration: an amount asked about, what it is for, how it is worked out, when it is taken
    ("why is the charge $105.00 now?", Intent.QUESTION_PRORATION),
    ("what is this $105 charge", Intent.QUESTION_PRORATION),
    ("where does the 105 come from?", Intent.QUESTION_PRORATION),
    ("how did you calculate that amount?", Intent.QUESTION_PRORATION),
    ("when does the first $499 payment go out?", Intent.QUESTION_PRORATION),
    ("when do I pay?", Intent.QUESTION_PRORATION),
    ("when can I add 5 more seats?", Intent.QUESTION_FEATURES),
    # price: tax and totals
    ("is tax included in the price?", Intent.QUESTION_PRICE),
    ("what's the total for 12 months", Intent.QUESTION_PRICE),
    # affirm: a "no" that only waves an objection away, a busy clinic as the reason to upgrade
    ("no, please go ahead", Intent.AFFIRM),
    ("No. Go for it", Intent.AFFIRM),
    ("no objections, do it", Intent.AFFIRM),
    ("yes, makes sense with how busy we've been", Intent.AFFIRM),
    ("definitely, given how slammed the front desk is", Intent.AFFIRM),
    ("put us on scale", Intent.AFFIRM),
    ("no, go ahead and leave us on starter", Intent.DECLINE),
    ("no, don't go ahead", Intent.DECLINE),
    ("no go", Intent.DECLINE),
    ("no, go ahead next month", Intent.DECLINE),
    ("no, go ahead and cancel", Intent.DECLINE),
    ("we're slammed, later", Intent.DECLINE),
    ("yes but we're swamped this week", Intent.DECLINE),
    # a question is never a yes, even with "upgrade" in it
    ("what's the upgrade?", Intent.UNKNOWN),
    ("which plan should I upgrade to?", Intent.UNKNOWN),
    ("should I upgrade?", Intent.UNKNOWN),
    ("is it worth upgrading?", Intent.UNKNOWN),
    ("upgrade?", Intent.UNKNOWN),
    ("confirm upgrade?", Intent.UNKNOWN),
    ("would it be worth upgrading for us", Intent.UNKNOWN),
    ("did you upgrade us already?", Intent.UNKNOWN),
    ("how do i upgrade?", Intent.AFFIRM),
    ("where do I confirm", Intent.AFFIRM),
    ("can you upgrade us?", Intent.AFFIRM),
    ("yes, what happens next?", Intent.AFFIRM),
    ("yes please. when does it start?", Intent.QUESTION_PRORATION),
    # confirm: the card, the charge and the offered price echoed around the confirm word
    ("confirmed, please charge my card", Intent.CONFIRM),
    ("I confirm the upgrade to scale at $899.00 a month", Intent.CONFIRM),
    ("confirm, go ahead and charge it", Intent.CONFIRM),
    ("yes confirm, bill the card on file", Intent.CONFIRM),
    # decline: refusing to pay, cancelling the account, staying where we are
    ("not paying $499 for texts", Intent.DECLINE),
    ("i'm not paying more", Intent.DECLINE),
    ("won't pay that", Intent.DECLINE),
    ("we're cancelling next month", Intent.DECLINE),
    ("planning to cancel after this quarter", Intent.DECLINE),
    ("keep us on starter", Intent.DECLINE),
    ("can we stay on starter?", Intent.UNKNOWN),
    ("can I add users later?", Intent.QUESTION_FEATURES),
    ("is there a limit on contacts?", Intent.QUESTION_FEATURES),
    ("does it have a mobile app?", Intent.QUESTION_FEATURES),
    ("is the $499 per location?", Intent.QUESTION_PRICE),
    ("usage should go back to normal, we'll pass", Intent.DECLINE),
    ("no, usage is going back down", Intent.DECLINE),
    ("can I cancel the upgrade later?", Intent.QUESTION_DOWNGRADE),
    ("what if usage goes back down?", Intent.QUESTION_DOWNGRADE),
    # human: a person asked for in one word, or asked to write
    ("agent pls", Intent.HUMAN),
    ("person please", Intent.HUMAN),
    ("representative now", Intent.HUMAN),
    ("have someone from support email me", Intent.HUMAN),
    ("can a person from your team text me back", Intent.HUMAN),
    ("who can I speak to about this?", Intent.HUMAN),
    ("I don't want a bot, who do I talk to", Intent.HUMAN),
    ("don't have anyone text me again", Intent.STOP),
    # discount: a counter-offer, a deal asked for, a segment's pricing
    ("we'd upgrade for $350", Intent.DISCOUNT),
    ("yes if it's $399", Intent.DISCOUNT),
    ("can you give us a deal", Intent.DISCOUNT),
    ("is there education pricing?", Intent.DISCOUNT),
    ("it's a deal", Intent.AFFIRM),
    ("sure if you can do $399", Intent.DISCOUNT),
    ("ok but only for $399", Intent.DISCOUNT),
    ("yes if it's cheaper", Intent.DISCOUNT),
    # a yes-word that is negated, a price refused, an opt-out in "cancel"
    ("absolutely not", Intent.DECLINE),
    ("of course not", Intent.DECLINE),
    ("yes, but not at $499", Intent.DECLINE),
    ("no objection, we'll keep starter", Intent.DECLINE),
    ("cancel these messages", Intent.STOP),
    ("i want to cancel the texts", Intent.STOP),
    # callback to a number or desk; start again by being added back
    ("call our office line after 4", Intent.CALLBACK),
    ("ring the clinic tomorrow", Intent.CALLBACK),
    ("add me back to the list please", Intent.START),
    ("put us back on the texts", Intent.START),
    ("don't add me back", Intent.UNKNOWN),
    ("sales please", Intent.HUMAN),
    ("have your team reach out", Intent.HUMAN),
    ("we'd pay 400 max", Intent.DISCOUNT),
    ("4,800?? that can't be right", Intent.UNKNOWN),
]


@pytest.mark.parametrize("text, intent", GENERALISED, ids=[t for t, _ in GENERALISED])
def test_general_phrasings_of_the_held_out_misses(text, intent):
    assert classify(text) is intent


@pytest.mark.parametrize("text", [
    "don't confirm", "not confirming", "I can't confirm yet", "can you confirm the price?",
    "confirm?", "CONFIRM??", "never confirm", "i'll confirm tomorrow", "confirm with my boss first",
    "would you confirm it includes sso?", "yes", "yes please", "ok do it", "👍", "confirmation",
    "I confirm I don't want it", "confirm if you can do 10% off", "can you call me to confirm",
    "no confirm", "confirm what", "not yet confirmed",
    "confirm you won't charge my card today", "confirm the charge is 105?",
    "confirmed, but charge the card next month", "i'd confirm for $399", "don't charge my card",
    "confirm at 399 only if you waive the 105", "confirm $399", "confirm for 12 months",
])
def test_confirm_is_never_predicted_for_a_text_that_is_not_an_explicit_confirmation(text):
    assert classify(text) is not Intent.CONFIRM


@pytest.mark.parametrize("text, reason", [
    ("too expensive and we're leaving anyway", DeclineReason.LEAVING),
    ("too expensive right now", DeclineReason.PRICE),
    ("we don't need it right now", DeclineReason.NOT_NEEDED),
    ("maybe next year", DeclineReason.TIMING),
    ("no", DeclineReason.OTHER),
    ("can't afford it", DeclineReason.PRICE),
    ("closing down the shop", DeclineReason.LEAVING),
    ("we barely use what we have", DeclineReason.NOT_NEEDED),
    ("ask me in a couple of months", DeclineReason.TIMING),
    ("not interested", DeclineReason.OTHER),
    ("we went with a competitor", DeclineReason.LEAVING),
    ("out of budget", DeclineReason.PRICE),
    ("starter is plenty for us", DeclineReason.NOT_NEEDED),
    ("busy season, later", DeclineReason.TIMING),
    ("nope", DeclineReason.OTHER),
    ("no thanks, our current plan is fine", DeclineReason.NOT_NEEDED),
    ("nah, what we have works fine", DeclineReason.NOT_NEEDED),
    ("the plan we have does the job", DeclineReason.NOT_NEEDED),
    ("it was a one-off spike, no thanks", DeclineReason.NOT_NEEDED),
    ("volume will settle back to normal", DeclineReason.NOT_NEEDED),
    ("no, usage is going back down", DeclineReason.NOT_NEEDED),
    ("keep us on starter", DeclineReason.NOT_NEEDED),
    ("not paying $499 for texts", DeclineReason.PRICE),
    ("won't pay that", DeclineReason.PRICE),
    ("no way we're paying that much", DeclineReason.PRICE),
    ("we're cancelling next month", DeclineReason.LEAVING),
    ("planning to cancel after this quarter", DeclineReason.LEAVING),
    ("we will be canceling soon", DeclineReason.LEAVING),
])
def test_decline_reason_prefers_leaving_then_price_then_not_needed_then_timing(text, reason):
    assert decline_reason(text) is reason


def test_classify_is_total_over_odd_input():
    for text in ["\x00", "🤖" * 500, "a" * 10_000, "¿¡", "\u200b", "STOP" * 50, "你好"]:
        assert isinstance(classify(text), Intent)
        assert isinstance(decline_reason(text), DeclineReason)


def test_the_labelled_set_meets_the_targets_with_the_shipped_model():
    examples = load(DEFAULT_SET)
    report = evaluate(examples, shipped_model())
    assert len(examples) >= 330
    assert report.failures() == [], report.confusions
    assert len(keyword_variants()) >= 8 * 3


def test_the_rules_alone_never_act_on_a_false_yes_or_stop_in_the_labelled_set():
    report = evaluate(load(DEFAULT_SET), None)
    assert report.false_yes == [] and report.false_stops == [] and report.keyword_misses == []


def test_the_labelled_set_covers_every_intent_and_labels_every_decline_reason():
    examples = load(DEFAULT_SET)
    counts = {intent: sum(e.label == intent.value for e in examples) for intent in Intent}
    assert all(n >= 15 for n in counts.values()), counts
    assert counts[Intent.STOP] >= 30 and counts[Intent.CONFIRM] >= 20
    stop_texts = {e.text.strip(" .!").upper() for e in examples if e.label == "stop"}
    assert CARRIER_STOP_KEYWORDS <= stop_texts
    near_misses = [e for e in examples
                   if "conf" in e.text.lower() and e.label != "confirm"]
    assert len(near_misses) >= 20
    assert all(e.reason is not None for e in examples if e.label == "decline")


# --- readings the conversation needs beyond the intent ------------------------------------------

@pytest.mark.parametrize("text, digits", [
    ("four ninety nine", "499"), ("fourteen ninety nine", "1499"), ("a hundred and five", "105"),
    ("two fifty", "250"), ("one oh five", "105"), ("three seventy five a month", "375 a month"),
    ("five hundred", "500"), ("ninety nine", "99"), ("twenty twenty six", "2026")])
def test_numbers_said_in_words_are_read_as_digits(text, digits):
    from core.intents import normalised
    assert " ".join(normalised(text)[0]) == digits


@pytest.mark.parametrize("text", ["one sec", "no one", "the first one", "nine"])
def test_a_lone_number_word_stays_a_word(text):
    from core.intents import normalised
    assert " ".join(normalised(text)[0]) == text


def test_a_spoken_confirmation_with_the_price_in_words_is_explicit():
    from core.intents import understand
    heard = understand("confirm growth at four ninety nine")
    assert heard.intent is Intent.CONFIRM and heard.explicit


@pytest.mark.parametrize("text", ["ok thanks, will look at it tonight", "ok lemme ask my wife",
                                  "ok give me a day", "yes but let me check with finance first",
                                  "yes next month", "yes if my boss agrees", "maybe",
                                  "let me think about it"])
def test_a_hedge_is_a_pause_never_a_yes_or_a_decline(text):
    from core.intents import understand
    heard = understand(text)
    assert heard.hold and heard.intent is Intent.UNKNOWN and not heard.explicit, heard


@pytest.mark.parametrize("text, explicit", [
    ("yes", True), ("YES", True), ("yes please", True), ("Yes, go ahead", True),
    ("confirm", True), ("yes, $105 today is fine", True),
    ("ok", False), ("k", False), ("👍", False), ("sounds good", False), ("sure thing", False),
    ("yes is that right", False), ("yes?", False)])
def test_only_a_yes_word_standing_alone_or_the_confirm_word_is_explicit(text, explicit):
    from core.intents import understand
    assert understand(text).explicit is explicit, understand(text)


@pytest.mark.parametrize("text", ["no thanks. dont unsubscribe me tho", "dont stop texting me",
                                  "if this keeps up ill unsubscribe", "I might unsubscribe later",
                                  "not saying stop, just not now"])
def test_a_negated_or_conditional_mention_of_stopping_is_not_an_opt_out(text):
    assert classify(text) is not Intent.STOP


@pytest.mark.parametrize("text", ["STOP", "stop texting me", "please dont text me",
                                  "no and stop messaging me about upgrades", "unsub",
                                  "remove me from this list", "stop texting me or i will report you"])
def test_a_plain_request_to_stop_is_an_opt_out(text):
    assert classify(text) is Intent.STOP


@pytest.mark.parametrize("text", ["are you a bot?", "is this a real person?", "am I talking to a human"])
def test_are_you_a_bot_is_flagged(text):
    from core.intents import understand
    assert understand(text).asks_if_bot


# --- how the model's readings are acted on (a hand-made model: "blorp" means stop) -------------

def _model(label: str, weight: float = 12.0):
    from core.intent_model import IntentModel, LinearModel
    intents = LinearModel([label, "unknown"], [0.0, 0.0], {"w:blorp": [[0, weight]]})
    reasons = LinearModel(["other", "price"], [1.0, 0.0], {})
    return IntentModel(intents, reasons)


def test_a_stop_only_the_model_sees_is_acted_on_when_it_is_very_sure():
    from core.intents import understand
    heard = understand("blorp", _model("stop"))
    assert heard.intent is Intent.STOP and heard.sure and heard.confidence >= 0.8


def test_a_stop_the_model_sees_beside_a_negated_stop_word_is_asked_about():
    from core.intents import understand
    heard = understand("dont stop texting me blorp", _model("stop"))
    assert heard.intent is Intent.STOP and not heard.sure


@pytest.mark.parametrize("label", ["start", "confirm"])
def test_a_consent_grant_or_a_confirmation_only_the_model_sees_is_asked_about(label):
    from core.intents import understand
    heard = understand("blorp", _model(label))
    assert heard.intent is Intent(label) and not heard.sure and not heard.explicit


def test_the_model_never_turns_a_question_of_the_rules_into_a_stop():
    from core.intents import understand
    heard = understand("how much is growth blorp?", _model("stop"))
    assert heard.intent is Intent.QUESTION_PRICE


def test_a_no_only_the_model_sees_is_never_acted_on_the_bot_asks():
    from core.intents import understand
    heard = understand("blorp", _model("decline"))
    assert heard.intent is Intent.DECLINE and heard.confidence > 0.9 and not heard.sure


@pytest.mark.parametrize("text, explicit", [
    ("ok he's fine with it. confirm", True), ("sounds good. confirmed", True),
    ("not sure. confirm", False), ("ok but wait. confirm", False), ("he said no. confirm", False),
    ("confirm?", False)])
def test_a_confirm_sentence_after_others_is_explicit_unless_they_negate_hedge_or_ask(
        text, explicit):
    from core.intents import understand
    assert understand(text).explicit is explicit, understand(text)
