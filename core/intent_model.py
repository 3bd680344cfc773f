"""A small statistical reader of buyer replies: a linear model over word and character n-grams.

The rules in `core.intents` are exact where exactness matters (carrier keywords, the explicit
confirmation); text they do not recognise is read by this model, trained offline with
scikit-learn on the labelled corpus in `training/intents/` (`scripts/train_intents.py`) and
shipped as `core/intent_model.json`. The application loads that file at start-up
(`IntentModel.from_json`) and hands the model to the core; scoring here is plain Python (a
dictionary lookup per feature), so the core imports no library and reads no file.

The features are computed from the same normalised words the rules read (typos corrected,
short-hands expanded, amounts kept whole), so the model and the rules see the same text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable

FEATURE_VERSION = 2
_BREAK = ","


def features(words: Iterable[str], has_question_mark: bool,
             cues: Iterable[str] = ()) -> list[str]:
    """The model's features of a normalised message: words, word pairs (across a clause break
    too, marked), character 3- to 5-grams of each word with its edges, the message's first and
    last word, whether it has a question mark, and `cues`: what the rules made of it
    ("rules:decline"), so the model learns when the rules are right."""
    words = [w for w in words]
    plain = [w for w in words if w != _BREAK]
    found: list[str] = []
    for w in plain:
        found.append("w:" + w)
        padded = f"<{w}>"
        for n in (3, 4, 5):
            for i in range(len(padded) - n + 1):
                found.append("c:" + padded[i:i + n])
    sequence = ["^"] + words + ["$"]
    for a, b in zip(sequence, sequence[1:]):
        found.append(f"b:{a} {b}")
    if plain:
        found.append("first:" + plain[0])
        found.append("last:" + plain[-1])
        found.append(f"len:{min(len(plain), 12) // 3}")
    else:
        found.append("empty")
    if has_question_mark:
        found.append("q:?")
    found.extend(f"cue:{c}" for c in cues)
    return sorted(set(found))


@dataclass(frozen=True)
class Prediction:
    """The most likely label with its probability, and the runner-up."""

    label: str
    probability: float
    second: str
    second_probability: float
    probabilities: dict[str, float]  # every label's

    def of(self, label: str) -> float:
        return self.probabilities.get(label, 0.0)


class LinearModel:
    """A multinomial logistic regression: a bias per label, and per feature the weights that
    matter as (label index, weight) pairs (the rest are zero); each message's features are
    binary and scaled to unit length, as in training."""

    def __init__(self, labels: list[str], intercepts: list[float],
                 weights: dict[str, list[list[float]]], version: int = FEATURE_VERSION) -> None:
        if version != FEATURE_VERSION:
            raise ValueError(f"model features are version {version}, this code reads "
                             f"{FEATURE_VERSION}: retrain with scripts/train_intents.py")
        if len(intercepts) != len(labels) or any(
                not 0 <= int(i) < len(labels) for row in weights.values() for i, _ in row):
            raise ValueError("model weights do not match its labels")
        self.labels = list(labels)
        self.intercepts = list(intercepts)
        self.weights = weights

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LinearModel":
        return cls(data["labels"], data["intercepts"], data["weights"], data.get("version", 0))

    def predict(self, words: Iterable[str], has_question_mark: bool,
                cues: Iterable[str] = ()) -> Prediction:
        feats = features(words, has_question_mark, cues)
        scale = 1 / math.sqrt(len(feats)) if feats else 0.0
        scores = list(self.intercepts)
        for f in feats:
            for i, w in self.weights.get(f, ()):
                scores[int(i)] += w * scale
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = sum(exps)
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
        first, second = ranked[0], ranked[1]
        return Prediction(self.labels[first], exps[first] / total,
                          self.labels[second], exps[second] / total,
                          {label: e / total for label, e in zip(self.labels, exps)})


@dataclass(frozen=True)
class IntentModel:
    """The two models the conversation uses: the intent of a reply (the intents of
    `core.intents.Intent` and "hold", a pause), and the reason of a decline."""

    intents: LinearModel
    reasons: LinearModel

    @classmethod
    def from_json(cls, text: str) -> "IntentModel":
        """The models from the JSON `scripts/train_intents.py` writes."""
        data = json.loads(text)
        return cls(LinearModel.from_dict(data["intents"]), LinearModel.from_dict(data["reasons"]))

    def predict(self, words: Iterable[str], has_question_mark: bool,
                cues: Iterable[str] = ()) -> Prediction:
        return self.intents.predict(words, has_question_mark, cues)

    def reason(self, words: Iterable[str], has_question_mark: bool,
               cues: Iterable[str] = ()) -> Prediction:
        return self.reasons.predict(words, has_question_mark, cues)
