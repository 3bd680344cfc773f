"""Train the reply model (intents and decline reasons) on the labelled corpus; write its JSON.

Usage, from the repository root (needs the `train` extra: pip install '.[train]'):

    .venv/bin/python scripts/train_intents.py            # cross-validate, then train and write
    .venv/bin/python scripts/train_intents.py --cv-only  # only the cross-validated figures

The corpus is every TSV under training/intents/ plus the rules' tuning set tests/data/intents.tsv
(text, intent, decline_reason; the intent may also be "hold", a pause). The blind sets
(tests/data/intents_blind*.tsv) are never read here: they measure, they do not teach.

The model is scikit-learn's multinomial logistic regression over the features of
core.intent_model.features (the normalised words the rules read, word pairs, character
n-grams), each message's binary features scaled to unit length. Weights too small to matter
are dropped and the rest rounded, so the shipped file stays small (about 1.2 MB); the script
prints how often the pruned model, scored by the pure-Python code in core/, gives the label the
corpus has.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core import intents  # noqa: E402
from core.intent_model import FEATURE_VERSION, IntentModel, LinearModel, features  # noqa: E402

CORPUS = ROOT / "training" / "intents"
TUNING_SET = ROOT / "tests" / "data" / "intents.tsv"
OUT = ROOT / "core" / "intent_model.json"
C = 32.0  # inverse regularisation, chosen by cross-validation on the corpus (see --cv-only)
KEEP_ABOVE = 0.2  # weights smaller than this (in absolute value) are dropped
DIGITS = 2


def load() -> list[tuple[str, str, str]]:
    rows = []
    for path in sorted(CORPUS.glob("*.tsv")) + [TUNING_SET]:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(reader)
            for n, row in enumerate(reader, start=2):
                if len(row) != 3:
                    raise SystemExit(f"{path}:{n}: expected 3 tab-separated fields")
                rows.append((row[0], row[1], row[2]))
    return rows


def featurise(texts: list[str], which: int = 2):
    """`which`: 2 for the intent model's cues, 3 for the reason model's."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.preprocessing import normalize
    dicts = []
    for text in texts:
        read = intents.model_input(text)
        dicts.append({f: 1.0 for f in features(read[0], read[1], read[which])})
    vectoriser = DictVectorizer()
    matrix = normalize(vectoriser.fit_transform(dicts))
    return vectoriser, matrix


def fit(texts: list[str], labels: list[str], which: int = 2) -> LinearModel:
    from sklearn.linear_model import LogisticRegression
    vectoriser, matrix = featurise(texts, which)
    clf = LogisticRegression(C=C, max_iter=3000)
    clf.fit(matrix, labels)
    names = vectoriser.get_feature_names_out()
    weights = {}
    for j, name in enumerate(names):
        kept = [[i, round(float(clf.coef_[i, j]), DIGITS)] for i in range(len(clf.classes_))
                if abs(clf.coef_[i, j]) >= KEEP_ABOVE]
        if kept:
            weights[str(name)] = kept
    return LinearModel([str(c) for c in clf.classes_],
                       [round(float(b), DIGITS) for b in clf.intercept_], weights)


def to_dict(model: LinearModel) -> dict:
    return {"version": FEATURE_VERSION, "labels": model.labels, "intercepts": model.intercepts,
            "weights": model.weights}


def train(rows) -> IntentModel:
    texts = [t for t, _, _ in rows]
    labels = [i for _, i, _ in rows]
    declines = [(t, r) for t, i, r in rows if i == "decline" and r]
    return IntentModel(fit(texts, labels),
                       fit([t for t, _ in declines], [r for _, r in declines], which=3))


def cross_validate(rows, folds: int = 5) -> None:
    """Accuracy of rules alone and rules + model, each fold's model trained on the others."""
    import random
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    stats = {"rules": [0, 0], "combined": [0, 0], "model": [0, 0]}
    reasons = {"rules": [0, 0], "combined": [0, 0]}
    false_yes = {"rules": 0, "combined": 0}
    for k in range(folds):
        test = shuffled[k::folds]
        train_rows = [r for i, r in enumerate(shuffled) if i % folds != k]
        model = train(train_rows)
        for text, label, reason in test:
            for name, m in (("rules", None), ("combined", model)):
                u = intents.understand(text, m)
                got = "hold" if u.hold else str(u.intent)
                stats[name][0] += got == label
                stats[name][1] += 1
                if got in ("affirm", "confirm") and label not in ("affirm", "confirm"):
                    false_yes[name] += 1
                if label == "decline" and reason:
                    reasons[name][0] += intents.decline_reason(text, m) == reason
                    reasons[name][1] += 1
            words, question, cues, _ = intents.model_input(text)
            stats["model"][0] += model.predict(words, question, cues).label == label
            stats["model"][1] += 1
    for name, (ok, n) in stats.items():
        print(f"{name:9} intent accuracy {ok / n:.1%} ({ok}/{n})")
    for name, (ok, n) in reasons.items():
        print(f"{name:9} reason accuracy {ok / n:.1%} ({ok}/{n})")
    print(f"non-yes read as affirm/confirm: rules {false_yes['rules']}, "
          f"combined {false_yes['combined']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv-only", action="store_true")
    args = parser.parse_args(argv)
    rows = load()
    print(f"corpus: {len(rows)} labelled replies")
    cross_validate(rows)
    if args.cv_only:
        return 0
    model = train(rows)
    OUT.write_text(json.dumps({"intents": to_dict(model.intents),
                               "reasons": to_dict(model.reasons)}, separators=(",", ":")),
                   encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size / 1024:.0f} KiB, "
          f"{len(model.intents.weights):,} intent features, "
          f"{len(model.reasons.weights):,} reason features)")
    shipped = IntentModel.from_json(OUT.read_text(encoding="utf-8"))
    fits = sum(shipped.predict(*intents.model_input(t)[:3]).label == label
               for t, label, _ in rows)
    print(f"the shipped (pruned, rounded) model gives the corpus label to "
          f"{fits}/{len(rows)} training replies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
