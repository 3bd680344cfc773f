"""How buyer-facing text tells the buyer to act, per the channel's input (core.channels.Input).

The conversation's sentences (core.conversation) are written once; where they say how to answer
they ask a `Wording`: on SMS "Reply CONFIRM to upgrade.", in the widget "Press Confirm to
upgrade.", on a call "Press 1 to upgrade." The actions are named by the keywords the rules read
(YES, CONFIRM, NO, PERSON, STOP, START, HELP), so what the text asks for is always something the
channel understands: a typed keyword on SMS and WhatsApp (and in the widget's text box), the
Confirm button in the widget, a key on the keypad.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.channels import Capabilities, Input


@dataclass(frozen=True)
class Wording:
    """`do("CONFIRM")` is the whole instruction ("reply CONFIRM"); `then("NO")` the same action
    as the next item of a list that began with one ("Reply YES to ..., NO if not now")."""

    verb: str  # how an action is taken: "reply", "type", "press"
    keys: Mapping[str, str] = field(default_factory=dict)  # keyword -> what to send or press
    actions: Mapping[str, str] = field(default_factory=dict)  # keyword -> a whole instruction

    def do(self, keyword: str) -> str:
        if keyword in self.actions:
            return self.actions[keyword]
        return f"{self.verb} {self.keys.get(keyword, keyword)}"

    def Do(self, keyword: str) -> str:  # noqa: N802 - the sentence-initial form of `do`
        text = self.do(keyword)
        return text[:1].upper() + text[1:]

    def then(self, keyword: str) -> str:
        if self.verb != "reply":  # "press 1 ..., press 3 if not now": each action said whole
            return self.do(keyword)
        return self.keys.get(keyword, keyword)


# SMS and WhatsApp: the keyword, typed.
KEYWORDS = Wording("reply")
# The web widget: a Confirm button on the confirmation step, a text box for everything else.
BUTTONS = Wording("type", actions={"CONFIRM": "press Confirm"})
# A phone call: the keypad. Its channel maps the keys back to the words the core reads before
# calling it (1 yes, or confirm on the confirmation step; 2 a person; 3 no; 9 stop; 0 help).
KEYPAD = Wording("press", keys={"YES": "1", "CONFIRM": "1", "PERSON": "2", "NO": "3", "STOP": "9",
                                "HELP": "0"},
                 actions={"START": "text START"})

WORDINGS: Mapping[Input, Wording] = {Input.KEYWORDS: KEYWORDS, Input.BUTTONS: BUTTONS,
                                     Input.KEYPAD: KEYPAD}


def wording(channel: Capabilities | None) -> Wording:
    """The channel's wording; keywords when the channel is not known (a typed reply)."""
    return KEYWORDS if channel is None else WORDINGS[channel.input]
