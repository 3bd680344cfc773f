"""The program's figures on the operator's API (core.metrics, core.experiment):

- `GET /api/v1/metrics?from=YYYY-MM-DD&to=YYYY-MM-DD[&by=vertical|channel|metric|step]
  [&conversion_days=N]`: JSON — opportunities and conversions per arm, the cross-to-upgrade
  rate, time from cross to prompt, prompt-to-conversion, mean ARR uplift, decline reasons, NRR
  90 days after upgrade, the lift with its 95% interval, and the sample-ratio check; per group
  too with `by`.
- `GET /api/v1/metrics.csv` (same parameters): the figures as rows (group, figure, treatment,
  control, value), or with `rows=opportunities` the per-opportunity rows behind them.

The window is `[from, to)` in UTC days over the crossing's detection time; by default the last
90 days up to and including today. Routes of the API's blueprint (its Bearer key, its errors).
The figures are read through the read replica when there is one (DATABASE_REPLICA_URL): they may
be a few seconds behind.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

from flask import Response, current_app, jsonify, request

from channels.api import api_audited, bp
from core import metrics
from core.errors import DomainError
from web.http import runtime
from web.serialize import OPPORTUNITY_COLUMNS, figure_rows, figures_json, opportunity_row

DEFAULT_DAYS = 90
MAX_DAYS = 3 * 366
FIRST_YEAR, LAST_YEAR = 1970, 9000


def _day(name: str) -> datetime | None:
    value = request.args.get(name)
    if value is None:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise DomainError(f"{name}: a date as YYYY-MM-DD, got {value[:40]!r}",
                          code="invalid_date", field=name) from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:  # (a window reaching before year 1 overflowed)
        raise DomainError(f"{name}: a date from {FIRST_YEAR} to {LAST_YEAR}, got {value!r}",
                          code="invalid_date", field=name)
    return day.replace(tzinfo=timezone.utc)


def _figures() -> metrics.Figures:
    rt = runtime()
    now = rt.now()
    end = _day("to") or (now.astimezone(timezone.utc).replace(
        hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1))
    start = _day("from") or end - timedelta(days=DEFAULT_DAYS)
    if end - start > timedelta(days=MAX_DAYS):
        raise DomainError(f"the window is longer than {MAX_DAYS} days", code="invalid_window",
                          field="from")
    raw_days = request.args.get("conversion_days")
    conversion_days = int(current_app.config.get("METRICS_CONVERSION_DAYS")
                          or metrics.CONVERSION_DAYS)
    if raw_days is not None:
        if not raw_days.isdigit() or not 1 <= int(raw_days) <= 365:
            raise DomainError("conversion_days: a whole number of days from 1 to 365",
                              code="invalid_conversion_days", field="conversion_days")
        conversion_days = int(raw_days)
    return metrics.figures(rt.replica_uow(), rt.catalog, rt.settings.policy, start, end,
                           now, by=request.args.get("by"),
                           conversion_days=conversion_days)


@bp.get("/metrics")
@api_audited("metrics.read", "metrics")
def get_metrics():
    return jsonify(figures_json(_figures()))


@bp.get("/metrics.csv")
@api_audited("metrics.export", "metrics")
def get_metrics_csv():
    f = _figures()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    which = request.args.get("rows", "figures")
    if which == "opportunities":
        writer.writerow(OPPORTUNITY_COLUMNS)
        writer.writerows(opportunity_row(o) for o in f.report.rows)
    elif which == "figures":
        writer.writerow(("group", "figure", "treatment", "control", "value"))
        writer.writerows(figure_rows(f))
    else:
        raise DomainError("rows: figures or opportunities", code="invalid_rows", field="rows")
    name = f"upgrade-chat-{which}-{f.report.start:%Y%m%d}-{f.report.end:%Y%m%d}.csv"
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
