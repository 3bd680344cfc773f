"""Does the measured lift find the truth? The simulation (`flask --app app simulate`,
devtools/simulation.py) for 20 seeds: each seed's measured lift, its 95% interval and whether it
covers the true lift, the count of seeds whose interval covers it (a 95% interval should cover
it about 19 times in 20; the aim is at least 17), and the time per run.

    .venv/bin/python bench/simulation.py                  # 10,000 accounts x 180 days, X = 0.08
    .venv/bin/python bench/simulation.py --accounts 2500 --days 90 --jobs 2
    .venv/bin/python bench/simulation.py --quick          # 300 accounts x 60 days, 4 seeds

Each run has a fresh SQLite database in memory (/dev/shm) and its own process when --jobs > 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def one(args: tuple[int, int, float, int]) -> dict:
    accounts, days, lift, seed = args
    from app import create_app
    from cli.simulate import run
    from devtools.simulation import Params

    folder = tempfile.mkdtemp(prefix="upgrade-chat-bench-")
    app = create_app({"DATABASE_URL": f"sqlite:///{folder}/operator.sqlite3",
                      "API_KEY": "bench", "INSTANCE_PATH": folder})
    with app.app_context():
        return run(Params(accounts, days, lift, seed))


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs, {model}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--true-lift", type=float, default=0.08)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (processes)")
    parser.add_argument("--quick", action="store_true", help="300 accounts x 60 days, 4 seeds")
    parser.add_argument("--json", type=Path, help="write every run's report here")
    a = parser.parse_args()
    if a.quick:
        a.accounts, a.days, a.seeds = 300, 60, 4
    started = time.perf_counter()
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}")
    print(f"{a.seeds} seeds: {a.accounts:,} accounts x {a.days} days, true lift "
          f"{a.true_lift:+.4f}, {a.jobs} at a time\n")
    print(f"{'seed':>4} {'opps T':>7} {'opps C':>7} {'rate T':>7} {'rate C':>7} "
          f"{'lift':>8} {'95% interval':>20} {'covers':>6} {'SRM p':>6} {'run s':>6}")
    work = [(a.accounts, a.days, a.true_lift, s)
            for s in range(a.first_seed, a.first_seed + a.seeds)]
    reports = []
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        for r in pool.map(one, work):
            reports.append(r)
            m = r["measured"]
            lift, ci = m["lift"]["absolute"], m["lift"]["ci95"]
            rate = m["rate"]
            print(f"{r['params']['seed']:>4} {m['opportunities']['treatment']:>7,} "
                  f"{m['opportunities']['control']:>7,} "
                  f"{rate['treatment'] or 0:>7.4f} {rate['control'] or 0:>7.4f} "
                  f"{lift if lift is not None else float('nan'):>+8.4f} "
                  f"{f'[{ci[0]:+.4f}, {ci[1]:+.4f}]' if ci else 'none':>20} "
                  f"{ {True: 'yes', False: 'NO', None: 'n/a'}[r['covers_true_lift']]:>6} "
                  f"{m['srm']['p_value'] or float('nan'):>6.3f} {r['seconds']:>6.1f}",
                  flush=True)
    covered = sum(r["covers_true_lift"] is True for r in reports)
    lifts = [r["measured"]["lift"]["absolute"] for r in reports
             if r["measured"]["lift"]["absolute"] is not None]
    seconds = [r["seconds"] for r in reports]
    flagged = sum(r["measured"]["srm"]["flag"] for r in reports)
    broken = sum(r["truth"]["chat_failed"] + sum(r["truth"]["held_back"].values())
                 for r in reports)
    print(f"\ncovered the true lift: {covered}/{len(reports)} (aim: at least 17 of 20)")
    if lifts:
        print(f"mean measured lift: {sum(lifts) / len(lifts):+.4f} (truth {a.true_lift:+.4f})")
    print(f"SRM flagged: {flagged}; held back or failed chat upgrades: {broken}")
    print(f"time per run: mean {sum(seconds) / len(seconds):.1f} s, max {max(seconds):.1f} s; "
          f"wall {time.perf_counter() - started:.0f} s")
    if a.json:
        a.json.write_text(json.dumps(reports, indent=1) + "\n")
    return 0 if covered >= round(0.85 * len(reports)) else 1


if __name__ == "__main__":
    sys.exit(main())
