"""The thread state machine (§6): every legal move, and every other move refused."""

import itertools

import pytest

from core.conversation import IllegalTransition, ThreadEvent, ThreadState, transition

S, E = ThreadState, ThreadEvent

# Written out from §6 by hand (not copied from the code's table): state, event -> next state.
LEGAL = {
    ("open", "offer_sent"): "offered",
    ("open", "escalate"): "escalated",
    ("open", "expire"): "expired",
    ("open", "opt_out"): "opted_out",
    ("offered", "affirm"): "awaiting_confirmation",
    ("offered", "decline"): "declined",
    ("offered", "escalate"): "escalated",
    ("offered", "expire"): "expired",
    ("offered", "opt_out"): "opted_out",
    ("awaiting_confirmation", "confirm"): "upgraded",
    ("awaiting_confirmation", "decline"): "declined",
    ("awaiting_confirmation", "escalate"): "escalated",
    ("awaiting_confirmation", "expire"): "expired",
    ("awaiting_confirmation", "opt_out"): "opted_out",
    ("declined", "affirm"): "awaiting_confirmation",  # "actually, yes" after a no
    ("expired", "affirm"): "awaiting_confirmation",
    ("escalated", "affirm"): "awaiting_confirmation",  # going ahead at list price; CSM told
}  # a finished thread keeps its outcome on a later STOP (consent is the contact's)
ALL = list(itertools.product([s.value for s in S], [e.value for e in E]))


def test_the_spec_lists_eight_states_and_seven_events():
    assert {s.value for s in S} == {"open", "offered", "awaiting_confirmation", "upgraded",
                                    "declined", "escalated", "expired", "opted_out"}
    assert len(ALL) == 56


@pytest.mark.parametrize("state, event", sorted(LEGAL))
def test_a_legal_move_reaches_its_state(state, event):
    assert transition(S(state), E(event)) == S(LEGAL[(state, event)])


@pytest.mark.parametrize("state, event", sorted(set(ALL) - set(LEGAL)))
def test_any_other_move_is_an_error_not_a_silent_no_op(state, event):
    with pytest.raises(IllegalTransition) as err:
        transition(S(state), E(event))
    assert err.value.code == "illegal_transition" and state in err.value.message


def test_no_path_reaches_upgraded_without_the_confirmation_step():
    reach = {("open",)}
    frontier = [("open",)]
    while frontier:  # every event sequence, breadth-first, without revisiting states
        path = frontier.pop()
        for event in E:
            try:
                nxt = transition(S(path[-1]), event).value
            except IllegalTransition:
                continue
            if nxt == "upgraded":
                assert path[-1] == "awaiting_confirmation" and event == E.CONFIRM
            if nxt not in {p[-1] for p in reach}:
                reach.add(path + (nxt,))
                frontier.append(path + (nxt,))
    assert "upgraded" in {p[-1] for p in reach}


def test_opted_out_is_final():
    assert all((("opted_out", e.value) not in LEGAL) for e in E)


def test_only_live_threads_move_to_opted_out():
    assert {s for (s, e) in LEGAL if e == "opt_out"} == {"open", "offered", "awaiting_confirmation"}
