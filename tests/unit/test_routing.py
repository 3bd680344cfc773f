"""core.routing: which account a message from a shared number belongs to (pure, table-driven)."""

from __future__ import annotations

import pytest

from core.routing import (Candidate, LastWrite, Reason, named_businesses, only_names, route,
                          says_whole_name, which_business, without_name)

# Two accounts share a number: Pat of Demo Co (contact 1), Sam of Harbor Realty (contact 2).
# Threads: 10 is Demo Co's, 20 Harbor's, 21 an older Harbor thread.
PAT_LIVE = Candidate(1, 100, "Demo Co", 10, True)
PAT_DONE = Candidate(1, 100, "Demo Co", 10, False)
PAT_NONE = Candidate(1, 100, "Demo Co", None, False)
SAM_LIVE = Candidate(2, 200, "Harbor Realty", 20, True)
SAM_DONE = Candidate(2, 200, "Harbor Realty", 20, False)
SAM_NONE = Candidate(2, 200, "Harbor Realty", None, False)
LEE_LIVE = Candidate(3, 300, "Pipeline Sales Co", 30, True)
# A colleague of Pat's at Demo Co with the same number, whose messages land in Pat's thread.
KIM_LIVE = Candidate(4, 100, "Demo Co", 10, True)

QUESTION = ("This number gets messages about more than one account: Demo Co and Harbor Realty. "
            "Which business is this about? Reply with its name.")


def opening(contact, thread):
    return LastWrite(contact, thread, "opening")


def reply(contact, thread):
    return LastWrite(contact, thread, "reply")


CASES = [
    # (id, candidates, last write, text, expected contact or None (ask), reason)
    ("one-contact", [SAM_LIVE], None, "confirm", 2, Reason.ONLY),
    ("one-account-two-contacts-last-writer", [PAT_LIVE, KIM_LIVE], reply(4, 10), "yes", 4,
     Reason.ONLY),
    ("one-account-two-contacts-nobody-wrote", [PAT_DONE, KIM_LIVE], None, "yes", 4, Reason.ONLY),
    # The README's scenario: Harbor awaits a confirmation, Demo Co's opening went out last.
    ("readme-confirm-after-the-other-opening", [PAT_LIVE, SAM_LIVE], opening(1, 10), "confirm",
     None, Reason.ASK),
    ("two-live-nobody-wrote", [PAT_LIVE, SAM_LIVE], None, "yes", None, Reason.ASK),
    ("two-live-talking-with-harbor", [PAT_LIVE, SAM_LIVE], reply(2, 20), "confirm", 2,
     Reason.TALKING),
    ("two-live-reply-in-an-older-thread", [PAT_LIVE, SAM_LIVE], reply(2, 21), "confirm", None,
     Reason.ASK),
    ("two-live-reply-outside-threads", [PAT_LIVE, SAM_LIVE], reply(1, None), "yes", None,
     Reason.ASK),
    ("named-by-full-name", [PAT_LIVE, SAM_LIVE], opening(1, 10), "Harbor Realty", 2,
     Reason.NAMED),
    ("named-by-a-distinctive-word", [PAT_LIVE, SAM_LIVE], opening(1, 10), "it's harbor!", 2,
     Reason.NAMED),
    ("named-case-insensitively", [PAT_LIVE, SAM_LIVE], reply(2, 20), "DEMO CO", 1, Reason.NAMED),
    ("named-beats-talking", [PAT_LIVE, SAM_LIVE], reply(2, 20), "confirm demo", 1, Reason.NAMED),
    ("naming-both-names-neither", [PAT_LIVE, SAM_LIVE], opening(1, 10), "demo or harbor?", None,
     Reason.ASK),
    ("named-without-a-thread-then-talking", [PAT_NONE, SAM_LIVE, LEE_LIVE], reply(1, None),
     "what does it cost?", 1, Reason.TALKING),
    # At most one live thread.
    ("one-live-it-wrote-last", [PAT_LIVE, SAM_DONE], opening(1, 10), "yes", 1,
     Reason.LAST_WRITER),
    ("one-live-talking-with-the-finished-one", [PAT_LIVE, SAM_DONE], reply(2, 20), "yes", 2,
     Reason.TALKING),
    ("one-live-the-finished-ones-opening-was-last", [PAT_LIVE, SAM_DONE], opening(2, 20), "yes",
     None, Reason.ASK),
    ("one-live-nobody-wrote", [PAT_DONE, SAM_LIVE], None, "yes", 2, Reason.ONLY_LIVE),
    ("one-live-a-stranger-wrote", [PAT_DONE, SAM_LIVE], opening(9, 90), "yes", 2,
     Reason.ONLY_LIVE),
    ("none-live-talking", [PAT_DONE, SAM_DONE], reply(1, 10), "actually yes", 1,
     Reason.TALKING),
    ("none-live-last-writer", [PAT_DONE, SAM_DONE], opening(2, 21), "actually yes", 2,
     Reason.LAST_WRITER),
    ("none-live-no-thread-anywhere", [PAT_NONE, SAM_NONE], None, "can I upgrade?", None,
     Reason.ASK),
    ("none-live-finished-threads-nobody-wrote", [PAT_DONE, SAM_NONE], None, "actually yes", None,
     Reason.ASK),
]


@pytest.mark.parametrize("candidates, last, text, contact, reason",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_route(candidates, last, text, contact, reason):
    decided = route(candidates, last, text, ignore=["starter", "growth", "scale"])
    assert (decided.contact_id, decided.reason) == (contact, reason)
    assert (decided.question is None) == (contact is not None)


def test_the_question_names_every_business_once_in_a_stable_order():
    asked = route([SAM_LIVE, PAT_LIVE], opening(1, 10), "confirm")
    assert asked.question == QUESTION
    three = route([LEE_LIVE, SAM_LIVE, PAT_LIVE, KIM_LIVE], None, "yes")
    assert three.question.startswith("This number gets messages about more than one account: "
                                     "Demo Co, Harbor Realty and Pipeline Sales Co. ")
    assert which_business(["b", "A"]).count("A and b") == 1


def test_the_chosen_business_is_named_on_the_route():
    assert route([PAT_LIVE, SAM_LIVE], None, "harbor").business == "Harbor Realty"


def test_route_needs_a_candidate():
    with pytest.raises(ValueError):
        route([], None, "yes")


@pytest.mark.parametrize("text, names, ignore, named", [
    ("Demo Co", ["Demo Co", "Harbor Realty"], (), [0]),
    ("demo", ["Demo Co", "Harbor Realty"], (), [0]),
    ("co", ["Demo Co", "Harbor Realty"], (), []),  # a generic word names nobody
    ("the realty one", ["Demo Co", "Harbor Realty"], (), [1]),
    ("acme", ["Acme Clinic", "Acme Dental"], (), []),  # a shared word is not distinctive
    ("acme dental", ["Acme Clinic", "Acme Dental"], (), [1]),
    ("acme", ["Acme", "Acme Dental"], (), [0]),  # the whole name
    ("acme dental", ["Acme", "Acme Dental"], (), [1]),  # "Acme" inside the longer name
    ("yes do it", ["Northwind IT", "Demo Co"], (), []),  # two letters: never distinctive
    ("northwind it", ["Northwind IT", "Demo Co"], (), [0]),
    ("yes to growth", ["Growth Partners", "Demo Co"], ("growth",), []),  # a plan name
    ("growth partners", ["Growth Partners", "Demo Co"], ("growth",), [0]),
    ("café lumière please", ["Café Lumière", "Demo Co"], (), [0]),
    ("", ["Demo Co", "Harbor Realty"], (), []),
])
def test_named_businesses(text, names, ignore, named):
    assert named_businesses(text, names, ignore) == named


@pytest.mark.parametrize("text, name, only", [
    ("Demo Co", "Demo Co", True),
    ("it's demo co.", "Demo Co", True),
    ("This is about Harbor Realty please", "Harbor Realty", True),
    ("harbor", "Harbor Realty", True),
    ("confirm harbor", "Harbor Realty", False),
    ("yes, Demo Co", "Demo Co", False),
    ("thanks", "Demo Co", False),  # names nothing
])
def test_only_names(text, name, only):
    assert only_names(text, name) is only


@pytest.mark.parametrize("text, name, rest", [
    ("confirm Demo Co", "Demo Co", "confirm"),
    ("Demo Co: what's the price?", "Demo Co", ": what's the price?"),
    ("yes, harbor realty", "Harbor Realty", "yes,"),
    ("democracy co-op", "Demo Co", "democracy -op"),  # whole words only
])
def test_without_name(text, name, rest):
    assert without_name(text, name) == rest


@pytest.mark.parametrize("text, name, whole", [
    ("how much would Harbor Realty charge?", "Harbor Realty", True),
    ("harbor, how much?", "Harbor Realty", False),
    ("realty harbor", "Harbor Realty", False),
    ("yes, for my family", "Acme Family Clinic", False),
])
def test_says_whole_name(text, name, whole):
    assert says_whole_name(text, name) is whole


def test_one_word_of_a_name_in_a_sentence_names_no_business():
    from core.routing import named_businesses
    names = ["Demo Co", "Harbor Realty"]
    assert named_businesses("is there a demo video of what I lose?", names) == []
    assert named_businesses("it's demo", names) == [0]
    assert named_businesses("this is about Demo Co and its upgrade offer, right?", names) == [0]
