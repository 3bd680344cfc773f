"""The console's figures (channels/console_figures.py) say what the report says, draw without
script, and flag a broken split."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from channels.console_figures import render
from core.experiment import SampleRatio
from core.metrics import Figures, breakdown, opportunities, report
from tests.unit.test_metrics import CATALOG, NOW, POLICY, T0, scenario


def figures(by=None) -> Figures:
    opps = opportunities(scenario(), CATALOG, POLICY)

    def make(rows):
        return report(rows, CATALOG, POLICY, T0 - timedelta(days=1), T0 + timedelta(days=1), NOW)

    return Figures(make(opps), by, breakdown(opps, by, make) if by else {})


def test_the_six_figures_are_the_reports():
    html = str(render(figures()))
    for shown in ("50.0%", "treatment 2/4; target above 25%", "5 min", "33.3%",
                  "$4,200.00", "480%", "+16.7 pts", "too few opportunities to say"):
        assert shown in html, shown
    assert "<script" not in html and "http" not in html  # drawn here, nothing fetched
    assert html.count("<svg") == 4


def test_a_breakdown_is_a_table_and_a_broken_split_is_flagged():
    f = figures("channel")
    html = str(render(f))
    assert "<table" in html and ">whatsapp<" in html
    broken = replace(f, report=replace(f.report, srm=SampleRatio(1e-9, True, 0.5)))
    assert "Sample-ratio mismatch" in str(render(broken))
