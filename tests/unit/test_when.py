"""Reading the time a buyer names for a call back (channels/when.py), in their zone. The
examples are the tuning set of the reader (written for it); its blind measure is
scripts/eval_callbacks.py on tests/data/callbacks_blind*.jsonl."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, strategies as st

from channels.when import read_time

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 12, 8, 10, 5, tzinfo=NY)  # a Tuesday, mid-morning


@pytest.mark.parametrize("text, expected", [
    # a time with a day
    ("call me tomorrow after 3", "Wed 12-09 15:00"),
    ("ring me wednesday afternoon", "Wed 12-09 14:00"),
    ("phone me thurs around two ish", "Thu 12-10 14:00"),
    ("gimme a call on the 18th at 1", "Fri 12-18 13:00"),
    ("call me dec 14 at 11am", "Mon 12-14 11:00"),
    ("call me 12/15 at 3", "Tue 12-15 15:00"),
    ("call me saturday at 10", "Sat 12-12 10:00"),
    ("call me sat at 10", "Sat 12-12 10:00"),
    # a day alone: 09:00
    ("call me tomorrow", "Wed 12-09 09:00"),
    ("call me next week", "Mon 12-14 09:00"),
    # a time alone: today's, or tomorrow's once passed
    ("call me at 4", "Tue 12-08 16:00"),
    ("call me after 3", "Tue 12-08 15:00"),
    ("call me at 10", "Wed 12-09 10:00"),
    ("call me at 9:30am", "Wed 12-09 09:30"),
    ("can u call me back round 4.15pm", "Tue 12-08 16:15"),
    ("call me at 2.30", "Tue 12-08 14:30"),
    ("callback at 1430 please", "Tue 12-08 14:30"),
    ("call me 3p", "Tue 12-08 15:00"),
    ("call me at 5 p.m.", "Tue 12-08 17:00"),
    ("please call me back at quarter to five", "Tue 12-08 16:45"),
    ("call me at half past one", "Tue 12-08 13:30"),
    ("call me at four thirty", "Tue 12-08 16:30"),
    # parts of the day
    ("call me tonight", "Tue 12-08 19:00"),
    ("call me end of day", "Tue 12-08 17:00"),
    ("call me this evening", "Tue 12-08 17:00"),
    # from now
    ("call me in like 20 mins", "Tue 12-08 10:25"),
    ("call me in a couple of hours", "Tue 12-08 12:05"),
    ("call me in half an hour", "Tue 12-08 10:35"),
    # several times: the call's
    ("busy till 1, call me at 2", "Tue 12-08 14:00"),
    ("dont call before 11, call at 11:30", "Tue 12-08 11:30"),
    ("good morning! call me at 3", "Tue 12-08 15:00"),
    ("I rang at 9 and got nobody, call me back at 1", "Tue 12-08 13:00"),
    ("ring me tonight at 8", "Tue 12-08 20:00"),
    ("call me at eight tonight", "Tue 12-08 20:00"),
    ("call me tmrw, 10 works", "Wed 12-09 10:00"),
    ("can u call tomorrow, not at 2 though, 3 is better", "Wed 12-09 15:00"),
    ("call me in 15", "Tue 12-08 10:20"),
    ("give us a bell tomorrow arvo", "Wed 12-09 14:00"),
    ("ring me thursday at half 11", "Thu 12-10 11:30"),
    ("call me at 8 in the morning on friday", "Fri 12-11 08:00"),
    ("I'm around after 4:15, call then", "Tue 12-08 16:15"),
])
def test_a_named_time_is_read_in_the_buyers_zone(text, expected):
    got = read_time(text, "America/New_York", NOW)
    assert got is not None and got.astimezone(NY).strftime("%a %m-%d %H:%M") == expected


@pytest.mark.parametrize("text", [
    "call me", "call me asap", "call me, I have 30 seats", "we have 2 plans, call me",
    "call me back at this number 555-201-3344", "I sat with my team, call me",
    "v2.10 is buggy, call me",
    "call me today at 9am",  # passed: no time in the future, the next allowed minute
])
def test_no_time_is_read_where_none_is_named(text):
    assert read_time(text, "America/New_York", NOW) is None


@given(st.text(max_size=80))
def test_any_text_reads_as_a_future_moment_or_none(text):
    got = read_time(text, "America/New_York", NOW)
    assert got is None or got > NOW
