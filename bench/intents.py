"""Benchmark reading replies: the rules alone, and the rules with the shipped model.

Run from the repository root:

    .venv/bin/python bench/intents.py            # --rounds 5

Reads every reply of the labelled sets under tests/data/ (the texts only) with
`core.intents.understand`, with and without the model, several rounds each (the best round is
reported, so a slow spell of the machine does not count), and times loading the model file as
`app.create_app` does once per process.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.intent_model import IntentModel  # noqa: E402
from core.intents import understand  # noqa: E402

MODEL_FILE = ROOT / "core" / "intent_model.json"


def texts() -> list[str]:
    found = []
    for path in sorted((ROOT / "tests" / "data").glob("intents*.tsv")):
        with path.open(encoding="utf-8", newline="") as f:
            rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(rows)
            found += [row[0] for row in rows if row]
    return found


def best_per_reply(replies: list[str], model, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for text in replies:
            understand(text, model)
        best = min(best, time.perf_counter() - start)
    return best / len(replies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model = IntentModel.from_json(MODEL_FILE.read_text(encoding="utf-8"))
    load_ms = (time.perf_counter() - start) * 1000
    replies = texts()
    rules = best_per_reply(replies, None, args.rounds) * 1000
    both = best_per_reply(replies, model, args.rounds) * 1000
    print(f"{len(replies):,} replies, best of {args.rounds} rounds")
    print(f"{'reading':<22}{'ms/reply':>10}{'replies/s':>12}")
    print(f"{'rules alone':<22}{rules:>10.3f}{1000 / rules:>12,.0f}")
    print(f"{'rules + model':<22}{both:>10.3f}{1000 / both:>12,.0f}")
    print(f"model file: {MODEL_FILE.stat().st_size / 1024:,.0f} KiB, loaded in {load_ms:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
