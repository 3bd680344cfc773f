"""The time a buyer names for a call back ("call me tomorrow after 3", "ring me fri around
half past two", "in a couple hours"), read in the buyer's zone; the core's `Settings.read_time`.

A message is read as people write and say it, in three parts:
- **when from now**: "in 45 mins", "in an hour", "in a couple of hours" — now plus that;
- **the day**: today / tonight / this afternoon, tomorrow (and its slang), a weekday (its next
  occurrence after today), "next week" (Monday), and dates ("dec 11", "the 14th", "12/11",
  read by dateparser, month first);
- **the time**: "3pm", "3 p.m.", "3p", "15:00", "2.30", "at 4", "after 3", "around four
  thirty", "half past two", "quarter to 5", "2ish", and parts of the day (morning 09:00,
  noon or lunch 12:00, afternoon 14:00, evening, after work or end of day 17:00, tonight 19:00).
  A bare hour is read the way people say it during a working day: 8 to 11 in the morning, 12
  to 7 in the afternoon ("call me at 4" is 4 PM).

When a message names several times, the call's is the one after the words asking for the call
("I'm in meetings till 2, call me at 3" is 3), and a time said as a limit ("before 2", "till
2") is not a time to call. A day with no time is 09:00 that day; a time with no day is today's,
or tomorrow's once it has passed. Only a future moment counts; a message that names none ("call
me", "call me asap") reads as None, and the call is booked for the next allowed minute. Quiet
hours are not this module's business: core.calls moves a time in them to the next allowed one.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

_WORD_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
_MINUTE_WORDS = {"oh five": 5, "ten": 10, "fifteen": 15, "twenty": 20, "thirty": 30,
                 "forty five": 45, "forty-five": 45, "fortyfive": 45, "forty": 40, "fifty": 50}
_NUMBER = "|".join(sorted(_WORD_NUMBERS, key=len, reverse=True))
_MINUTES = "|".join(sorted(_MINUTE_WORDS, key=len, reverse=True))

_REWRITES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), replacement) for pattern, replacement in (
        (r"\b(?:tmrw|tmr|tmw|tmrow|tomoz|tomorow|tommorow|tommorrow|tomorro|2moro|2morrow|"
         r"2morow)\b", "tomorrow"),
        (r"\b(?:tonite|2nite)\b", "tonight"),
        (r"\b(\d{1,2})\s*ish\b", r"\1"),
        (r"\b(\d{1,2})\.(\d{2})(?!\d)", r"\1:\2"),
        (r"\b(\d{1,2}(?::\d{2})?)\s*([ap])\.?\s?m\.?(?=\W|$)", r"\1\2m"),
        (r"\b(\d{1,2}(?::\d{2})?)\s*([ap])\b(?!\.?\s?m)", r"\1\2m"),
        (r"\b(?:at|@|around|about|after|by)\s+([01]\d|2[0-3])([0-5]\d)\b", r"at \1:\2"),
        (r"\b(?:arvo|avo)\b", "afternoon"),
        (rf"\bhalf past ({_NUMBER}|\d{{1,2}})\b", r"\1:30"),
        (rf"\bhalf ({_NUMBER}|\d{{1,2}})\b(?!\s*(?:an?|hour|hours|hr|hrs|min|mins|day))",
         r"\1:30"),  # British: "half 9" is 9:30
        (rf"\bquarter past ({_NUMBER}|\d{{1,2}})\b", r"\1:15"),
        (rf"\b(?:a )?quarter (?:to|til|till) ({_NUMBER}|\d{{1,2}})\b", r"\1:-15"),
        (rf"\b({_NUMBER})[ -]({_MINUTES})\b", r"\1:\2"),
        (r"\b(\d{1,2}(?::\d{2})?)\s+(?:in the morning|a\.?m\.?)(?=\W|$)", r"\1am"),
        (r"\b(\d{1,2}(?::\d{2})?)\s+(?:in the (?:afternoon|evening)|at night)\b", r"\1pm"),
        (rf"\b({_NUMBER})\s+o'?\s?clock\b", r"\1"),
        (r"\b(\d{1,2})\s+o'?\s?clock\b", r"\1"),
    ))

_IN = re.compile(
    r"\bin\s+(?:like\s+|about\s+|around\s+|roughly\s+|maybe\s+)?"
    r"(an|a|one|half an|half a|a couple(?: of)?|couple(?: of)?|a few|few|two|three|four|five|"
    r"ten|fifteen|twenty|thirty|forty five|forty-five|\d{1,3})\s*"
    r"(minutes|minute|mins|min|m|hours|hour|hrs|hr|h)\b", re.IGNORECASE)
_IN_BARE = re.compile(r"\bin\s+(?:like\s+|about\s+)?(\d{1,2})(?=\s*(?:$|[.,!?;]|pls\b|please\b|"
                      r"plz\b|or so\b|thanks\b|thx\b))", re.IGNORECASE)
_AMOUNTS = {"an": 1, "a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "ten": 10,
            "fifteen": 15, "twenty": 20, "thirty": 30, "forty five": 45, "forty-five": 45,
            "a couple": 2, "a couple of": 2, "couple": 2, "couple of": 2, "a few": 3, "few": 3}

_WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_WEEKDAY = re.compile(r"\b(?:(next|this|on)\s+)?(mon|tue|wed|thu|fri|sat|sun)"
                      r"(?:day|s|sday|nesday|rsday|rs|r|urday|day)?\b", re.IGNORECASE)
_MONTHS = (r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
           r"sep(?:t|tember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?")
_DATE = re.compile(
    rf"\b(?:(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?"
    rf"(?:{_MONTHS})\b|\d{{1,2}}/\d{{1,2}}(?!/|\d))", re.IGNORECASE)
_NTH = re.compile(r"\bthe\s+(\d{1,2})(?:st|nd|rd|th)\b", re.IGNORECASE)
_SAT_VERB = re.compile(r"\b(?:i|we|he|she|they|you|just|was|were|had|have|and)\s+$",
                       re.IGNORECASE)
_RELATIVE_DAY = re.compile(r"\b(today|tonight|tomorrow|next week|this (?:morning|afternoon|"
                           r"evening))\b", re.IGNORECASE)

_CLOCK = re.compile(r"\b(\d{1,2})(?::(-?\d{2}))?(am|pm)\b|\b(\d{1,2}):(-?\d{2})\b",
                    re.IGNORECASE)
_SPOKEN_CLOCK = re.compile(rf"\b({_NUMBER})(?::(-?\d{{2}}|{_MINUTES}))?\b", re.IGNORECASE)
_BARE = re.compile(r"\b(at|@|after|around|about|by|from|say|ish|til|till|until|before|"
                   r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*|tomorrow|today)\s+(\d{1,2})\b"
                   r"(?!\s*(?:%|\$|k\b|min|minute|hour|hr|h\b|day|week|month|user|seat|plan|"
                   r"people|person|of\b|/|:|\d))", re.IGNORECASE)
_SPOKEN_BARE = re.compile(rf"\b(at|after|around|about|by|from|til|till|until|before)\s+"
                          rf"({_NUMBER})\b(?!\s*(?:minute|hour|day|week|month|user|seat|plan|"
                          rf"people|person|of\b))", re.IGNORECASE)
_PREFERRED = re.compile(r"(?<![\w.])(\d{1,2})(?::(\d{2}))?(am|pm)?\s+(?:(?:is|would be|'s)\s+"
                        r"(?:better|best|good|fine|ok|okay|great|perfect)|works|would work|"
                        r"suits)\b", re.IGNORECASE)
_PARTS = re.compile(r"(?<!good )\b(morning|noon|midday|lunchtime|lunch|afternoon|evening|"
                    r"after work|end of (?:the )?day|eod|cob|tonight)\b", re.IGNORECASE)
_PART_TIMES = {"morning": time(9), "noon": time(12), "midday": time(12), "lunch": time(12),
               "lunchtime": time(12), "afternoon": time(14), "evening": time(17),
               "after work": time(17), "end of day": time(17), "end of the day": time(17),
               "eod": time(17), "cob": time(17), "tonight": time(19)}
# "call after 2, not before 1", "not at 3 tho": a limit or a time refused, not the call's time
_EVENING = re.compile(r"\b(?:tonight|this evening|in the evening)\b", re.IGNORECASE)
_MERIDIEM = re.compile(r"\d\s*am\b|\bmorning\b", re.IGNORECASE)
_LIMITS = {"before", "til", "till", "until", "not", "except"}
_ASKING = re.compile(r"\b(?:call|ring|phone|telephone|buzz|callback|reach|try me)\b",
                     re.IGNORECASE)


@dataclass(frozen=True)
class _Found:
    at: int  # where in the text
    value: object
    vague: bool = False  # a part of the day: a clock time said too wins over it


def _business_hour(hour: int, minute: int) -> time | None:
    """A bare hour of a working day: 8-11 in the morning, 12-7 in the afternoon."""
    if not 1 <= hour <= 12 or not 0 <= minute < 60:
        return None
    return time(hour if 8 <= hour <= 12 else (hour + 12) % 24, minute)


def _minutes(value: str | None) -> int:
    if not value:
        return 0
    return int(value) if value.lstrip("-").isdigit() else _MINUTE_WORDS[value.lower()]


def _clock(hour: int, minute: int, meridiem: str | None) -> time | None:
    if minute < 0:  # "quarter to 5": 4:45
        hour, minute = hour - 1, 60 + minute
    if meridiem:
        if not 1 <= hour <= 12 or not 0 <= minute < 60:
            return None
        return time(hour % 12 + (12 if meridiem.lower() == "pm" else 0), minute)
    if 13 <= hour <= 23 and 0 <= minute < 60:
        return time(hour, minute)
    return _business_hour(hour, minute)


def _times(text: str) -> list[_Found]:
    found: list[_Found] = []
    taken: list[tuple[int, int]] = []

    def add(match: re.Match[str], value: time | None, start: int | None = None,
            vague: bool = False) -> None:
        span = (match.start() if start is None else start, match.end())
        if value is None or any(a < span[1] and span[0] < b for a, b in taken):
            return
        words_before = [w.lower().strip(",.") for w in text[:span[0]].split()[-2:]]
        if _LIMITS & set(words_before):
            return
        taken.append(span)
        found.append(_Found(span[0], value, vague))

    for m in _CLOCK.finditer(text):
        if m.group(1):
            add(m, _clock(int(m.group(1)), _minutes(m.group(2)), m.group(3)))
        else:
            add(m, _clock(int(m.group(4)), _minutes(m.group(5)), None))
    for m in _SPOKEN_CLOCK.finditer(text):
        if m.group(2) or re.search(r"\b(?:at|after|around|about|by|from)\s+$",
                                   text[:m.start()], re.IGNORECASE):
            add(m, _clock(_WORD_NUMBERS[m.group(1).lower()], _minutes(m.group(2)), None))
    for m in _BARE.finditer(text):
        if m.group(1).lower() in _LIMITS:
            taken.append((m.start(), m.end()))
            continue
        add(m, _business_hour(int(m.group(2)), 0), m.start(2))
    for m in _SPOKEN_BARE.finditer(text):
        if m.group(1).lower() in _LIMITS:
            taken.append((m.start(), m.end()))
            continue
        add(m, _business_hour(_WORD_NUMBERS[m.group(2).lower()], 0), m.start(2))
    for m in _PREFERRED.finditer(text):
        add(m, _clock(int(m.group(1)), _minutes(m.group(2)), m.group(3)))
    for m in _PARTS.finditer(text):
        add(m, _PART_TIMES[re.sub(r"\s+", " ", m.group(1).lower())], vague=True)
    return sorted(found, key=lambda f: f.at)


def _days(text: str, today: date) -> list[_Found]:
    found: list[_Found] = []
    for m in _RELATIVE_DAY.finditer(text):
        word = m.group(1).lower()
        if word == "tomorrow":
            day = today + timedelta(days=1)
        elif word == "next week":
            day = today + timedelta(days=7 - today.weekday())
        else:
            day = today
        found.append(_Found(m.start(), day))
    for m in _WEEKDAY.finditer(text):
        if m.group(0).lower() == "sat" and _SAT_VERB.search(text[:m.start()]):
            continue  # "I sat with them": the verb
        ahead = (_WEEKDAYS[m.group(2).lower()] - today.weekday() - 1) % 7 + 1
        found.append(_Found(m.start(), today + timedelta(days=ahead)))
    for m in _DATE.finditer(text):
        day = _calendar_day(m.group(0), today)
        if day is not None:
            found.append(_Found(m.start(), day))
    for m in _NTH.finditer(text):
        n = int(m.group(1))
        month = today.replace(day=1)
        for _ in range(2):
            try:
                candidate = month.replace(day=n)
            except ValueError:
                candidate = None
            if candidate is not None and candidate >= today:
                found.append(_Found(m.start(), candidate))
                break
            month = (month + timedelta(days=32)).replace(day=1)
    return sorted(found, key=lambda f: f.at)


def _calendar_day(phrase: str, today: date) -> date | None:
    """A written date ("dec 11", "11 december", "12/11": month first), the next one from today,
    read by dateparser."""
    import dateparser  # a slow import: only when a date is written

    settings = {"PREFER_DATES_FROM": "future", "DATE_ORDER": "MDY",
                "RELATIVE_BASE": datetime.combine(today, time(12))}
    with warnings.catch_warnings():  # dateparser's own deprecation noise
        warnings.simplefilter("ignore")
        parsed = dateparser.parse(phrase, languages=["en"], settings=settings)
    if parsed is None:
        return None
    day = parsed.date()
    if day < today:  # "dec 1" in December: next year's
        try:
            day = day.replace(year=day.year + 1)
        except ValueError:
            return None
    return day


def _chosen(found: list[_Found], asking_at: int | None) -> _Found | None:
    """The call's: the first after the (last) words asking for it, else the last one said."""
    if not found:
        return None
    if asking_at is not None:
        after = [f for f in found if f.at > asking_at]
        if after:
            return next((f for f in after if not f.vague), after[0])
    return next((f for f in reversed(found) if not f.vague), found[-1])


def read_time(text: str, zone: str, now: datetime) -> datetime | None:
    """The future moment `text` names, read in `zone`, as UTC; None when it names none."""
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    tz = ZoneInfo(zone)
    local_now = now.astimezone(tz)
    relative = _IN.search(text)
    if relative:
        amount = relative.group(1).lower()
        count = _AMOUNTS.get(amount) or (int(amount) if amount.isdigit() else 0)
        if amount in ("half an", "half a"):
            delta = timedelta(minutes=30)
        elif relative.group(2).lower().startswith("h"):
            delta = timedelta(hours=count)
        else:
            delta = timedelta(minutes=count)
        if delta > timedelta(0):
            return (local_now + delta).replace(second=0, microsecond=0).astimezone(timezone.utc)
    bare = _IN_BARE.search(text)
    if bare and 0 < int(bare.group(1)) <= 90:  # "call me in 20": minutes
        return (local_now + timedelta(minutes=int(bare.group(1)))).replace(
            second=0, microsecond=0).astimezone(timezone.utc)
    asking = list(_ASKING.finditer(text))  # "I called at 2 ... call me at 5:30": the last ask
    asking_at = asking[-1].start() if asking else None
    day_found = _chosen(_days(text, local_now.date()), asking_at)
    time_found = _chosen(_times(text), asking_at)
    if day_found is None and time_found is None:
        return None
    clock = time_found.value if time_found is not None else time(9)
    assert isinstance(clock, time)
    if clock.hour < 12 and _EVENING.search(text) and not _MERIDIEM.search(text):
        clock = clock.replace(hour=clock.hour + 12)  # "at nine tonight": 21:00
    if day_found is not None:
        day = day_found.value
        assert isinstance(day, date)
        moment = datetime.combine(day, clock, tzinfo=tz)
    else:
        moment = datetime.combine(local_now.date(), clock, tzinfo=tz)
        if moment <= local_now:  # "at 10" said after 10: tomorrow's
            moment = datetime.combine(local_now.date() + timedelta(days=1), clock, tzinfo=tz)
    # The wall clock in the zone on that day (fold 0: the first of a repeated hour).
    moment = moment.astimezone(timezone.utc)
    return moment if moment > now else None
