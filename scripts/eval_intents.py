"""Evaluate the intent classifier on a labelled set and check its targets (exit 1 on a miss).

Usage, from the repository root:  .venv/bin/python scripts/eval_intents.py [path/to/intents.tsv]

The set is tab-separated with a header: text, intent, decline_reason (empty unless a decline).
Targets: overall accuracy >= 95%; no text predicted `confirm` unless labelled confirm; every
carrier opt-out keyword (upper, lower, title case, with punctuation or spaces) classifies as stop.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.intents import STOP_KEYWORDS, DeclineReason, Intent, classify, decline_reason

DEFAULT_SET = ROOT / "tests" / "data" / "intents.tsv"
MIN_ACCURACY = 0.95


@dataclass(frozen=True)
class Example:
    """One labelled buyer reply."""

    text: str
    intent: Intent
    reason: DeclineReason | None


@dataclass
class Report:
    """What the evaluation found, and whether the targets hold."""

    total: int = 0
    correct: int = 0
    by_intent: dict[Intent, Counter] = field(default_factory=lambda: defaultdict(Counter))
    confusions: dict[tuple[Intent, Intent], list[str]] = field(
        default_factory=lambda: defaultdict(list))
    reason_total: int = 0
    reason_correct: int = 0
    reason_misses: list[tuple[str, DeclineReason, DeclineReason]] = field(default_factory=list)
    false_confirms: list[tuple[str, Intent]] = field(default_factory=list)
    keyword_misses: list[tuple[str, Intent]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def reason_accuracy(self) -> float:
        return self.reason_correct / self.reason_total if self.reason_total else 1.0

    def failures(self) -> list[str]:
        """The targets that do not hold, in words; empty when all do."""
        found = []
        if self.accuracy < MIN_ACCURACY:
            found.append(f"overall accuracy {self.accuracy:.1%} is below {MIN_ACCURACY:.0%}")
        if self.false_confirms:
            found.append(f"{len(self.false_confirms)} text(s) predicted confirm but labelled "
                         f"otherwise: {[t for t, _ in self.false_confirms]}")
        if self.keyword_misses:
            found.append(f"{len(self.keyword_misses)} carrier keyword variant(s) not stop: "
                         f"{self.keyword_misses}")
        return found


def load(path: Path) -> list[Example]:
    """Read the labelled set; a bad label is an error naming its line."""
    examples = []
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows)
        if [h.strip() for h in header[:2]] != ["text", "intent"]:
            raise ValueError(f"{path}: the header must start with text<TAB>intent")
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            text, label = row[0], row[1].strip()
            reason = row[2].strip() if len(row) > 2 else ""
            try:
                intent = Intent(label)
                why = DeclineReason(reason) if reason else None
            except ValueError as e:
                raise ValueError(f"{path}:{line}: {e}") from None
            if intent is Intent.DECLINE and why is None:
                raise ValueError(f"{path}:{line}: a decline needs a decline reason")
            examples.append(Example(text, intent, why))
    return examples


def keyword_variants() -> list[str]:
    """Every carrier opt-out keyword as buyers send it: any case, punctuation, spaces."""
    variants = []
    for keyword in sorted(STOP_KEYWORDS):
        for form in (keyword, keyword.lower(), keyword.title()):
            variants += [form, f"{form}.", f"{form}!", f"{form}!!!", f" {form} ", f"{form}?",
                         f"\"{form}\"", f"{form} 🛑"]
    return variants


def evaluate(examples: list[Example]) -> Report:
    """Classify every example (and the decline reason of every decline) and the keyword variants."""
    report = Report()
    for ex in examples:
        predicted = classify(ex.text)
        report.total += 1
        report.by_intent[ex.intent]["support"] += 1
        report.by_intent[predicted]["predicted"] += 1
        if predicted is ex.intent:
            report.correct += 1
            report.by_intent[ex.intent]["correct"] += 1
        else:
            report.confusions[(ex.intent, predicted)].append(ex.text)
        if predicted is Intent.CONFIRM and ex.intent is not Intent.CONFIRM:
            report.false_confirms.append((ex.text, ex.intent))
        if ex.intent is Intent.DECLINE and ex.reason is not None:
            got = decline_reason(ex.text)
            report.reason_total += 1
            if got is ex.reason:
                report.reason_correct += 1
            else:
                report.reason_misses.append((ex.text, ex.reason, got))
    for text in keyword_variants():
        predicted = classify(text)
        if predicted is not Intent.STOP:
            report.keyword_misses.append((text, predicted))
    return report


def render(report: Report, top: int = 10) -> str:
    """The report as a plain-text table."""
    lines = [f"{'intent':<20}{'precision':>10}{'recall':>10}{'support':>9}"]
    for intent in Intent:
        c = report.by_intent.get(intent, Counter())
        support, predicted, correct = c["support"], c["predicted"], c["correct"]
        precision = f"{correct / predicted:.1%}" if predicted else "-"
        recall = f"{correct / support:.1%}" if support else "-"
        lines.append(f"{intent.value:<20}{precision:>10}{recall:>10}{support:>9}")
    lines.append("")
    lines.append(f"overall accuracy: {report.accuracy:.1%} ({report.correct}/{report.total})")
    lines.append(f"decline-reason accuracy: {report.reason_accuracy:.1%} "
                 f"({report.reason_correct}/{report.reason_total})")
    variants = len(keyword_variants())
    lines.append(f"carrier keyword variants classified stop: "
                 f"{variants - len(report.keyword_misses)}/{variants}")
    lines.append("")
    pairs = sorted(report.confusions.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    lines.append(f"top confusions (true -> predicted): {'none' if not pairs else ''}")
    for (true, predicted), texts in pairs[:top]:
        shown = "; ".join(repr(t) for t in texts[:3])
        lines.append(f"  {true.value} -> {predicted.value}: {len(texts)}  e.g. {shown}")
    if report.reason_misses:
        lines.append("decline-reason misses (text: true -> predicted):")
        for text, true, got in report.reason_misses[:top]:
            lines.append(f"  {text!r}: {true.value} -> {got.value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_SET,
                        help=f"the labelled TSV (default: {DEFAULT_SET.relative_to(ROOT)})")
    parser.add_argument("--report-only", action="store_true",
                        help="print the figures and misses, exit 0 whatever they are (for a "
                             "blind set, which is measured, never tuned on)")
    args = parser.parse_args(argv)
    report = evaluate(load(args.path))
    print(render(report))
    failures = report.failures()
    print()
    if failures:
        for failure in failures:
            print(f"{'below target' if args.report_only else 'FAIL'}: {failure}")
        return 0 if args.report_only else 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
