"""The time a buyer names in a message ("call me tomorrow after 3", "ring me friday 2pm"), read
with dateparser in the buyer's zone; the core's `Settings.read_time`.

Only a time in the future counts; a message that names none ("call me") reads as None, and the
call is booked for the next allowed minute. A bare hour is read the way people say it during a
working day: 8 to 11 in the morning, 12 to 7 in the afternoon ("call me at 4" is 4 PM). Quiet
hours are not this module's business: core.calls moves a time in them to the next allowed one.
"""

from __future__ import annotations

import re
import warnings
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

_SLANG = ((re.compile(r"\b(?:tmrw|tmr|tmw|tomoz|tomorow|tommorow|tommorrow|2moro|2morrow)\b",
                      re.IGNORECASE), "tomorrow"),
          (re.compile(r"\b(?:tonite)\b", re.IGNORECASE), "tonight"))
# "at 4", "after 3", "around 10", "by 2:30": an hour with no am/pm.
_BARE_HOUR = re.compile(r"\b(at|after|around|by|about|from)\s+(\d{1,2})(?::(\d{2}))?"
                        r"(?!\s*(?:[ap]\.?m\b|:|\d|%|\$|k\b|min|hour|h\b|day|week))",
                        re.IGNORECASE)
# Words that name a time or a day: without one, nothing is read (dateparser reads "may" or a
# stray number as a date).
_TIME_WORDS = re.compile(
    r"\b(?:today|tonight|tomorrow|morning|afternoon|evening|noon|monday|tuesday|wednesday|"
    r"thursday|friday|saturday|sunday|mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun|next week|"
    r"in \d+ (?:min|mins|minutes|hour|hours)|in an hour|in half an hour|\d{1,2}(?::\d{2})?\s*"
    r"[ap]\.?m\b|\d{1,2}:\d{2})", re.IGNORECASE)
_DAY_WORDS = re.compile(r"\b(?:today|tonight|tomorrow|mon|tue|wed|thu|fri|sat|sun)[a-z]*\b|"
                        r"\bnext week\b|\bin (?:an|\d+|half an) ", re.IGNORECASE)


def _hour_of_day(match: re.Match[str]) -> str:
    hour, minutes = int(match.group(2)), match.group(3) or "00"
    if not 1 <= hour <= 12:
        return match.group(0)
    suffix = "am" if 8 <= hour <= 11 else "pm"
    return f"{match.group(1)} {hour}:{minutes}{suffix}"


def _utc(moment: datetime, zone: str) -> datetime:
    """dateparser's moment as UTC. A time read in the buyer's zone comes back as its wall clock
    with the UTC offset of the day it was read on (pytz, not normalised): across a DST change
    ("tomorrow after 3" on the eve of one) that is an hour off, so the wall clock is placed in
    the zone again. A zone the buyer named ("3pm EST") is kept."""
    if getattr(moment.tzinfo, "zone", None) == zone:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment.astimezone(timezone.utc)


def read_time(text: str, zone: str, now: datetime) -> datetime | None:
    """The future moment `text` names, read in `zone`, as UTC; None when it names none."""
    for pattern, word in _SLANG:
        text = pattern.sub(word, text)
    text = _BARE_HOUR.sub(_hour_of_day, text)
    if not _TIME_WORDS.search(text):
        return None
    from dateparser.search import search_dates  # a slow import: only when a time is named

    # Relative words ("tomorrow at 3pm") are read against the buyer's own wall clock, in their
    # zone: their 3 PM, whatever zone the server is in.
    wall = now.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    settings = {"TIMEZONE": zone, "RETURN_AS_TIMEZONE_AWARE": True,
                "PREFER_DATES_FROM": "future", "RELATIVE_BASE": wall}
    with warnings.catch_warnings():  # dateparser's own deprecation noise
        warnings.simplefilter("ignore")
        found = search_dates(text, languages=["en"], settings=settings)
    if not found:
        return None
    moments = [_utc(moment, zone) for _, moment in found]
    future = [m for m in moments if m > now]
    if future:
        return future[0]
    if not _DAY_WORDS.search(text):  # "at 10" said after 10: tomorrow's 10
        later = moments[0].astimezone(ZoneInfo(zone)).replace(tzinfo=None) + timedelta(days=1)
        return later.replace(tzinfo=ZoneInfo(zone)).astimezone(timezone.utc)
    return None
