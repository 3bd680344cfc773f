"""The console's figures: the program's six figures with their targets, the funnel by arm, the
lift drawn as an interval, the time-to-prompt distribution, decline reasons and a breakdown,
as HTML with inline SVG drawn here (no script, no CDN: the page works offline and prints).

`render(figures)` takes core.metrics.Figures and returns markup for the console's
`<section id="figures">`. Every number shown is the API's (GET /api/v1/metrics), so what the
page says can be checked against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from core.experiment import Lift
from core.metrics import CONTROL, TREATMENT, Figures, Report
from core.money import dollars

BAR = "#4f46e5"
MUTED = "#9ca3af"


def _pct(value: float | None, places: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{places}f}%"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _card(title: str, value: str, detail: str, status: str | None = None) -> str:
    mark = f" {status}" if status in ("good", "bad") else ""
    return (f'<div class="figure{mark}"><div class="title">{escape(title)}</div>'
            f'<div class="value">{escape(value)}</div>'
            f'<div class="detail">{escape(detail)}</div></div>')


def _cards(r: Report) -> str:
    rate = r.cross_to_upgrade_rate[TREATMENT]
    t = r.time_to_prompt
    lift = r.lift
    lift_text = "—" if lift.absolute is None else f"{100 * lift.absolute:+.1f} pts"
    lift_detail = (f"95% interval {100 * lift.ci95[0]:+.1f} to {100 * lift.ci95[1]:+.1f} pts, "
                   f"p = {lift.p_value:.3g}" if lift.ci95 and lift.p_value is not None
                   else (lift.note or ""))
    return "".join((
        _card("Cross-to-upgrade rate", _pct(rate),
              f"treatment {r.converted[TREATMENT]}/{r.opportunities[TREATMENT]}; target above "
              f"{_pct(r.target_rate, 0)}",
              None if rate is None else ("good" if rate > r.target_rate else "bad")),
        _card("Time from cross to prompt", _duration(t.p50),
              f"median of {t.count} openings; p90 {_duration(t.p90)}; "
              f"{_pct(t.share_under_1h, 0)} within the hour",
              None if t.share_under_1h is None else
              ("good" if t.share_under_1h >= 0.9 else "bad")),
        _card("Prompt to conversion", _pct(r.prompt_to_conversion_rate),
              f"of {r.prompted_threads} threads whose opening went out"),
        _card("Mean ARR uplift", "—" if r.mean_arr_uplift is None
              else dollars(r.mean_arr_uplift), "per converted account (12 × monthly)"),
        _card("NRR 90 days after upgrade", _pct(r.nrr_90d, 0),
              f"over {r.nrr_upgrades} upgrades at least 90 days old"),
        _card("Lift over control", lift_text, lift_detail,
              None if not lift.ci95 else ("good" if lift.ci95[0] > 0 else None)),
    ))


def _funnel(r: Report) -> str:
    """Opportunities → converted, per arm, as bars scaled to the larger arm."""
    top = max(1, *r.opportunities.values())
    rows = []
    y = 10
    for arm in (TREATMENT, CONTROL):
        for label, n, colour in (("opportunities", r.opportunities[arm], MUTED),
                                 ("converted", r.converted[arm], BAR)):
            width = 300 * n / top
            rows.append(f'<text x="0" y="{y + 12}" class="label">{arm} · {label}</text>'
                        f'<rect x="170" y="{y}" width="{width:.1f}" height="16" '
                        f'fill="{colour}"/><text x="{176 + width:.1f}" y="{y + 12}" '
                        f'class="label">{n}</text>')
            y += 22
        y += 8
    return (f'<svg class="chart" viewBox="0 0 520 {y}" role="img" aria-label="Funnel by arm">'
            f'{"".join(rows)}</svg>')


def _interval(lift: Lift) -> str:
    """The lift as a point and its 95% interval on an axis through zero."""
    if lift.absolute is None:
        return '<p class="muted">No lift yet: no opportunities in one arm.</p>'
    low, high = lift.ci95 if lift.ci95 else (lift.absolute, lift.absolute)
    span = max(0.05, abs(low), abs(high), abs(lift.absolute)) * 1.2

    def x(v: float) -> float:
        return 260 + 240 * v / span

    parts = [f'<line x1="20" y1="40" x2="500" y2="40" stroke="{MUTED}"/>',
             f'<line x1="{x(0):.1f}" y1="20" x2="{x(0):.1f}" y2="60" stroke="#111" '
             f'stroke-dasharray="3 3"/>',
             f'<text x="{x(0):.1f}" y="76" class="label" text-anchor="middle">0</text>']
    if lift.ci95:
        parts.append(f'<line x1="{x(low):.1f}" y1="40" x2="{x(high):.1f}" y2="40" '
                     f'stroke="{BAR}" stroke-width="6" stroke-linecap="round"/>')
        for v in (low, high):
            parts.append(f'<text x="{x(v):.1f}" y="24" class="label" text-anchor="middle">'
                         f'{100 * v:+.1f}</text>')
    parts.append(f'<circle cx="{x(lift.absolute):.1f}" cy="40" r="6" fill="#111"/>')
    note = "" if lift.ci95 else f'<p class="muted">{escape(lift.note or "")}</p>'
    return (f'<svg class="chart" viewBox="0 0 520 84" role="img" aria-label="Lift and its 95% '
            f'interval, in points">{"".join(parts)}</svg>{note}')


def _histogram(waits: Sequence[float]) -> str:
    """Time from cross to prompt, in buckets a person reads."""
    buckets = (("< 1 min", 60), ("< 10 min", 600), ("< 1 h", 3600), ("< 1 day", 86400),
               ("≥ 1 day", float("inf")))
    counts = [0] * len(buckets)
    for w in waits:
        counts[next(i for i, (_, limit) in enumerate(buckets) if w < limit)] += 1
    top = max(1, *counts)
    bars = []
    for i, ((label, _), n) in enumerate(zip(buckets, counts)):
        h = 80 * n / top
        bars.append(f'<rect x="{20 + i * 96}" y="{100 - h:.1f}" width="70" height="{h:.1f}" '
                    f'fill="{BAR}"/><text x="{55 + i * 96}" y="{95 - h:.1f}" class="label" '
                    f'text-anchor="middle">{n}</text><text x="{55 + i * 96}" y="118" '
                    f'class="label" text-anchor="middle">{escape(label)}</text>')
    return (f'<svg class="chart" viewBox="0 0 500 124" role="img" aria-label="Time from cross '
            f'to prompt">{"".join(bars)}</svg>')


def _declines(r: Report) -> str:
    top = max(1, *r.decline_reasons.values())
    rows = []
    for i, (reason, n) in enumerate(r.decline_reasons.items()):
        width = 300 * n / top
        rows.append(f'<text x="0" y="{14 + i * 22}" class="label">'
                    f'{escape(reason.replace("_", " "))}</text><rect x="100" y="{2 + i * 22}" '
                    f'width="{width:.1f}" height="16" fill="{BAR}"/><text x="{106 + width:.1f}" '
                    f'y="{14 + i * 22}" class="label">{n}</text>')
    return (f'<svg class="chart" viewBox="0 0 460 {10 + 22 * len(rows)}" role="img" '
            f'aria-label="Decline reasons">{"".join(rows)}</svg>')


def _breakdown(f: Figures) -> str:
    if not f.by or not f.groups:
        return ""
    head = ("<tr><th>" + escape(f.by) + "</th><th>Opportunities (T / C)</th><th>Rate T</th>"
            "<th>Rate C</th><th>Lift</th><th>Median to prompt</th></tr>")
    body = "".join(
        f"<tr><td>{escape(name)}</td><td>{g.opportunities[TREATMENT]} / "
        f"{g.opportunities[CONTROL]}</td><td>{_pct(g.cross_to_upgrade_rate[TREATMENT])}</td>"
        f"<td>{_pct(g.cross_to_upgrade_rate[CONTROL])}</td><td>"
        f"{'—' if g.lift.absolute is None else f'{100 * g.lift.absolute:+.1f} pts'}</td>"
        f"<td>{_duration(g.time_to_prompt.p50)}</td></tr>" for name, g in f.groups.items())
    return f'<table class="breakdown">{head}{body}</table>'


# The styles are the console's stylesheet's (channels/static/console.css): its
# Content-Security-Policy allows no inline style.


def render(f: Figures) -> Markup:
    r = f.report
    waits = [max(0.0, (o.facts.opening_sent_at - o.facts.crossed_at).total_seconds())
             for o in r.rows if o.arm == TREATMENT and o.facts.opening_sent_at is not None]
    srm = ""
    if r.srm.flag:
        srm = (f'<p class="srm">Sample-ratio mismatch: the arms are {r.opportunities[TREATMENT]}'
               f' / {r.opportunities[CONTROL]} where a {r.srm.expected_control_share:.0%} control'
               f' share was configured (p = {r.srm.p_value:.2g}). Look for a bug before reading '
               f'the lift.</p>')
    window = (f'<p class="muted">Crossings detected from {r.start:%b %d, %Y} to before '
              f'{r.end:%b %d, %Y}; conversions within {r.conversion_days} days; treatment vs the '
              f'control cohort (intention to treat).</p>')
    return Markup(
        window + srm + f'<div class="tiles">{_cards(r)}</div><div class="charts">'
        f'<div class="panel"><h3>Funnel by arm</h3>{_funnel(r)}</div>'
        f'<div class="panel"><h3>Lift over control (points, 95% interval)</h3>'
        f'{_interval(r.lift)}</div>'
        f'<div class="panel"><h3>Time from cross to prompt</h3>{_histogram(waits)}</div>'
        f'<div class="panel"><h3>Decline reasons</h3>{_declines(r)}</div></div>'
        + _breakdown(f))
