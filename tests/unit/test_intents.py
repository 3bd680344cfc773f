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
from scripts.eval_intents import DEFAULT_SET, MIN_ACCURACY, evaluate, keyword_variants, load

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


@pytest.mark.parametrize("text", [
    "don't confirm", "not confirming", "I can't confirm yet", "can you confirm the price?",
    "confirm?", "CONFIRM??", "never confirm", "i'll confirm tomorrow", "confirm with my boss first",
    "would you confirm it includes sso?", "yes", "yes please", "ok do it", "👍", "confirmation",
    "I confirm I don't want it", "confirm if you can do 10% off", "can you call me to confirm",
    "no confirm", "confirm what", "not yet confirmed",
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
])
def test_decline_reason_prefers_leaving_then_price_then_not_needed_then_timing(text, reason):
    assert decline_reason(text) is reason


def test_classify_is_total_over_odd_input():
    for text in ["\x00", "🤖" * 500, "a" * 10_000, "¿¡", "\u200b", "STOP" * 50, "你好"]:
        assert isinstance(classify(text), Intent)
        assert isinstance(decline_reason(text), DeclineReason)


def test_the_labelled_set_meets_the_targets():
    examples = load(DEFAULT_SET)
    report = evaluate(examples)
    assert len(examples) >= 330
    assert report.accuracy >= MIN_ACCURACY, report.confusions
    assert report.false_confirms == []
    assert report.keyword_misses == []
    assert len(keyword_variants()) >= 8 * 3


def test_the_labelled_set_covers_every_intent_and_labels_every_decline_reason():
    examples = load(DEFAULT_SET)
    counts = {intent: sum(e.intent is intent for e in examples) for intent in Intent}
    assert all(n >= 15 for n in counts.values()), counts
    assert counts[Intent.STOP] >= 30 and counts[Intent.CONFIRM] >= 20
    stop_texts = {e.text.strip(" .!").upper() for e in examples if e.intent is Intent.STOP}
    assert CARRIER_STOP_KEYWORDS <= stop_texts
    near_misses = [e for e in examples
                   if "conf" in e.text.lower() and e.intent is not Intent.CONFIRM]
    assert len(near_misses) >= 20
    assert all(e.reason is not None for e in examples if e.intent is Intent.DECLINE)
