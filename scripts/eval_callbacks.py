"""How well a "call me" is understood: whether the reply reader hears a request for a call
(core.intents.classify says `callback`), and the time the buyer named (channels.when.read_time),
on a labelled set of messages (JSON lines: text, asks_for_call, local_time or null; the zone and
the moment each was sent are the set's: see --zone, --sent).

    .venv/bin/python scripts/eval_callbacks.py tests/data/callbacks_blind.jsonl

Prints the figures and every miss. A report: it exits 0 whatever the figures (the set is blind:
measured once, never tuned on; see docs/architecture.md, Voice).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from channels.when import read_time  # noqa: E402
from core.intents import Intent, classify  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--zone", default="America/Chicago")
    parser.add_argument("--sent", default="2026-12-07T11:20",
                        help="when every message was sent, local wall time")
    parser.add_argument("--figures-only", action="store_true", help="no list of the misses")
    args = parser.parse_args()
    zone = ZoneInfo(args.zone)
    sent = datetime.fromisoformat(args.sent).replace(tzinfo=zone)
    rows = [json.loads(line) for line in args.path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    heard = timed = timed_right = untimed = untimed_right = false_asks = 0
    misses: list[str] = []
    for row in rows:
        text, asks, wanted = row["text"], row["asks_for_call"], row.get("local_time")
        is_call = classify(text) == Intent.CALLBACK
        if asks and is_call:
            heard += 1
        elif asks:
            misses.append(f"not heard as a call ({classify(text)}): {text!r}")
        elif is_call:
            false_asks += 1
            misses.append(f"heard as a call, is not: {text!r}")
        if not asks:
            continue
        got = read_time(text, args.zone, sent)
        shown = got.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if got else None
        if wanted:
            timed += 1
            timed_right += shown == wanted
            if shown != wanted:
                misses.append(f"time {shown} for {wanted}: {text!r}")
        else:
            untimed += 1
            untimed_right += got is None
            if got is not None:
                misses.append(f"time {shown} read where none was named: {text!r}")
    asking = sum(1 for r in rows if r["asks_for_call"])
    print(f"{args.path.name}: {len(rows)} messages, {asking} asking for a call")
    print(f"  heard as a call:        {heard}/{asking} ({heard / max(asking, 1):.1%})")
    print(f"  wrongly heard as one:   {false_asks}/{len(rows) - asking}")
    print(f"  time named, read right: {timed_right}/{timed} ({timed_right / max(timed, 1):.1%})")
    print(f"  no time, none read:     {untimed_right}/{untimed}")
    for miss in [] if args.figures_only else misses:
        print("  -", miss)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
