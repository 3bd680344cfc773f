"""The §5 guardrails: their order, the control cohort, cooldown, cap, quarters and quiet hours."""

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from core.errors import DomainError
from core.guardrails import (Decision, GuardrailPolicy, NoCommonWindow, Outcome, PromptContext,
                             Reason, decide, in_control, next_allowed, quarter_start,
                             recipient_zones)

POLICY = GuardrailPolicy()
SALT = POLICY.control_salt
IN_CONTROL = "acme"  # sha256("upgrade-chat-control:acme")[:8] = 0x1716890e... = 0.0902 < 0.10
NOT_IN_CONTROL = "globex"  # 0.3066
NEW_YORK = "America/New_York"
NY_NUMBER = "+12125551234"
NINE, EIGHT_PM = time(9, 0), time(20, 0)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: str, *args) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))


# A weekday afternoon in New York (14:00 EST): every rule is clear.
NOW = utc(2026, 11, 26, 19, 0)

CLEAR = PromptContext(account=NOT_IN_CONTROL, account_timezone=NEW_YORK, opted_out=False,
                      health_red=False, last_decline_at=None, prompts_this_quarter=0,
                      phone_channel=True, phone=NY_NUMBER)

# Each rule broken on its own, as PromptContext changes.
OPTED_OUT = {"opted_out": True}
CONTROL = {"account": IN_CONTROL}
HEALTH = {"health_red": True}
COOLDOWN = {"last_decline_at": NOW - timedelta(days=3)}
CAP = {"prompts_this_quarter": 1}
QUIET = {"phone": NY_NUMBER}  # with the night-time `now` below
NIGHT = utc(2026, 11, 27, 3, 0)  # 22:00 in New York
NEXT_MORNING = utc(2026, 11, 27, 14, 0)  # 09:00 in New York


def test_the_control_ids_used_here_are_on_the_side_of_the_cohort_they_claim():
    assert in_control(IN_CONTROL, POLICY.control_share, SALT)
    assert not in_control(NOT_IN_CONTROL, POLICY.control_share, SALT)


def test_a_context_with_every_rule_clear_is_prompted_at_a_daytime_hour():
    assert decide(CLEAR, POLICY, NOW) == Decision(Outcome.PROMPTED, None)


@pytest.mark.parametrize("broken, expected", [
    (OPTED_OUT, Decision(Outcome.SUPPRESSED, Reason.OPTED_OUT)),
    (CONTROL, Decision(Outcome.SUPPRESSED, Reason.CONTROL)),
    (HEALTH, Decision(Outcome.SUPPRESSED, Reason.HEALTH)),
    (COOLDOWN, Decision(Outcome.SUPPRESSED, Reason.COOLDOWN)),
    (CAP, Decision(Outcome.SUPPRESSED, Reason.CAP)),
], ids=["opted_out", "control", "health", "cooldown", "cap"])
def test_each_rule_on_its_own_suppresses_with_its_reason(broken, expected):
    assert decide(replace(CLEAR, **broken), POLICY, NOW) == expected


def test_quiet_hours_on_their_own_defer_to_the_next_morning():
    assert decide(CLEAR, POLICY, NIGHT) == \
        Decision(Outcome.DEFERRED, Reason.QUIET_HOURS, NEXT_MORNING)


@pytest.mark.parametrize("broken, now, reason", [
    ({**OPTED_OUT, **CONTROL}, NOW, Reason.OPTED_OUT),
    ({**CONTROL, **HEALTH}, NOW, Reason.CONTROL),
    ({**HEALTH, **COOLDOWN}, NOW, Reason.HEALTH),
    ({**COOLDOWN, **CAP}, NOW, Reason.COOLDOWN),
    ({**CAP, **QUIET}, NIGHT, Reason.CAP),
    ({**OPTED_OUT, **CONTROL, **HEALTH, **COOLDOWN, **CAP}, NIGHT, Reason.OPTED_OUT),
    ({**CONTROL, **HEALTH, **COOLDOWN, **CAP}, NIGHT, Reason.CONTROL),
    ({**HEALTH, **COOLDOWN, **CAP}, NIGHT, Reason.HEALTH),
], ids=["opted_out before control", "control before health", "health before cooldown",
        "cooldown before cap", "cap before quiet hours", "opted_out before all",
        "control before the rest", "health before the rest"])
def test_when_several_rules_fail_the_first_in_the_product_order_wins(broken, now, reason):
    assert decide(replace(CLEAR, **broken), POLICY, now) == Decision(Outcome.SUPPRESSED, reason)


@pytest.mark.parametrize("since_decline, outcome", [
    (timedelta(days=29, hours=23), Outcome.SUPPRESSED),
    (timedelta(days=30) - timedelta(microseconds=1), Outcome.SUPPRESSED),
    (timedelta(days=30), Outcome.PROMPTED),  # the 30 days are over: exclusive at the end
    (timedelta(days=45), Outcome.PROMPTED),
    (timedelta(0), Outcome.SUPPRESSED),
])
def test_the_cooldown_lasts_exactly_thirty_days_after_a_decline(since_decline, outcome):
    ctx = replace(CLEAR, last_decline_at=NOW - since_decline)
    assert decide(ctx, POLICY, NOW).outcome is outcome


def test_a_decline_recorded_in_another_offset_is_compared_as_an_instant():
    declined = (NOW - timedelta(days=30)).astimezone(ZoneInfo("Asia/Tokyo"))
    assert decide(replace(CLEAR, last_decline_at=declined), POLICY, NOW).outcome is \
        Outcome.PROMPTED


@pytest.mark.parametrize("sent, per_quarter, outcome", [
    (0, 1, Outcome.PROMPTED),
    (1, 1, Outcome.SUPPRESSED),
    (5, 1, Outcome.SUPPRESSED),
    (1, 2, Outcome.PROMPTED),
    (2, 2, Outcome.SUPPRESSED),
    (0, 0, Outcome.SUPPRESSED),
])
def test_the_cap_allows_prompts_until_the_quarter_count_reaches_it(sent, per_quarter, outcome):
    policy = GuardrailPolicy(prompts_per_quarter=per_quarter)
    assert decide(replace(CLEAR, prompts_this_quarter=sent), policy, NOW).outcome is outcome


# ---------------------------------------------------------------------------- control cohort

def test_the_control_cohort_is_a_stable_hash_of_salt_and_account():
    digest = hashlib.sha256(b"upgrade-chat-control:acme").digest()
    assert digest[:8].hex() == "1716890ed61469bb"  # pinned: a change re-deals every account
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    assert in_control("acme", Decimal("0.0902"), SALT) is (fraction < 0.0902) is True
    assert in_control("acme", Decimal("0.0901"), SALT) is (fraction < 0.0901) is False


def test_the_control_assignment_is_the_same_every_time_it_is_asked():
    ids = [f"acct-{i}" for i in range(200)]
    first = [in_control(a, Decimal("0.10"), SALT) for a in ids]
    assert first == [in_control(a, Decimal("0.10"), SALT) for a in ids]


def test_a_share_of_zero_puts_nobody_in_control_and_a_share_of_one_everybody():
    ids = [f"acct-{i}" for i in range(1000)]
    assert not any(in_control(a, Decimal(0), SALT) for a in ids)
    assert all(in_control(a, Decimal(1), SALT) for a in ids)


def test_a_tenth_of_ten_thousand_accounts_land_in_control():
    share = sum(in_control(f"acct-{i:05d}", Decimal("0.10"), SALT) for i in range(10_000)) / 10_000
    assert 0.08 <= share <= 0.12


def test_another_salt_deals_a_different_cohort():
    ids = [f"acct-{i}" for i in range(1000)]
    a = {i for i in ids if in_control(i, Decimal("0.5"), SALT)}
    b = {i for i in ids if in_control(i, Decimal("0.5"), "another-experiment")}
    assert a != b


@pytest.mark.parametrize("share", [Decimal("-0.01"), Decimal("1.01")])
def test_a_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(ValueError):
        in_control("acme", share, SALT)
    with pytest.raises(DomainError):
        GuardrailPolicy(control_share=share)


# ---------------------------------------------------------------------------- quiet hours

@pytest.mark.parametrize("wall, expected", [
    ((2026, 11, 26, 8, 59), local(NEW_YORK, 2026, 11, 26, 9, 0)),
    ((2026, 11, 26, 20, 0), local(NEW_YORK, 2026, 11, 27, 9, 0)),
    ((2026, 11, 26, 23, 59), local(NEW_YORK, 2026, 11, 27, 9, 0)),
    ((2026, 11, 27, 0, 0), local(NEW_YORK, 2026, 11, 27, 9, 0)),
    ((2026, 11, 26, 3, 0), local(NEW_YORK, 2026, 11, 26, 9, 0)),
], ids=["08:59", "20:00", "23:59", "midnight", "03:00"])
def test_an_sms_outside_the_window_is_deferred_to_nine_local(wall, expected):
    decision = decide(CLEAR, POLICY, local(NEW_YORK, *wall))
    assert decision == Decision(Outcome.DEFERRED, Reason.QUIET_HOURS, expected.astimezone(UTC))
    assert decision.defer_until.tzinfo is UTC


@pytest.mark.parametrize("wall", [(2026, 11, 26, 9, 0), (2026, 11, 26, 13, 0),
                                  (2026, 11, 26, 19, 59), (2026, 11, 26, 19, 59, 59)],
                         ids=["09:00", "13:00", "19:59", "19:59:59"])
def test_an_sms_inside_the_window_is_prompted(wall):
    assert decide(CLEAR, POLICY, local(NEW_YORK, *wall)) == Decision(Outcome.PROMPTED, None)


def test_web_chat_has_no_quiet_hours():
    ctx = replace(CLEAR, phone_channel=False)
    assert decide(ctx, POLICY, local(NEW_YORK, 2026, 11, 26, 3, 0)).outcome is Outcome.PROMPTED


@pytest.mark.parametrize("now, expected", [
    (utc(2026, 11, 26, 23, 30), None),  # 18:30 in New York, the UTC date already ahead
    (utc(2026, 11, 27, 1, 30), utc(2026, 11, 27, 14, 0)),  # 20:30 NY on the 26th -> same UTC date
    (utc(2026, 11, 27, 0, 59), None),  # 19:59 NY
    (utc(2026, 11, 27, 1, 0), utc(2026, 11, 27, 14, 0)),  # 20:00 NY
])
def test_quiet_hours_follow_the_local_clock_across_the_utc_day_boundary(now, expected):
    assert decide(CLEAR, POLICY, now).defer_until == expected


@pytest.mark.parametrize("now, expected", [
    # Spring forward, Sunday 2027-03-14: 02:00 EST becomes 03:00 EDT; 09:00 EDT is 13:00 UTC.
    (local(NEW_YORK, 2027, 3, 14, 1, 30), utc(2027, 3, 14, 13, 0)),
    (local(NEW_YORK, 2027, 3, 14, 8, 59), utc(2027, 3, 14, 13, 0)),
    (local(NEW_YORK, 2027, 3, 13, 22, 0), utc(2027, 3, 14, 13, 0)),  # the evening before, EST
    (local(NEW_YORK, 2027, 3, 14, 20, 0), utc(2027, 3, 15, 13, 0)),
    # Fall back, Sunday 2026-11-01: 02:00 EDT becomes 01:00 EST; 09:00 EST is 14:00 UTC.
    (local(NEW_YORK, 2026, 11, 1, 1, 30), utc(2026, 11, 1, 14, 0)),  # the first 01:30 (EDT)
    (local(NEW_YORK, 2026, 11, 1, 1, 30).replace(fold=1), utc(2026, 11, 1, 14, 0)),  # EST
    (local(NEW_YORK, 2026, 10, 31, 21, 0), utc(2026, 11, 1, 14, 0)),  # the evening before, EDT
    (local(NEW_YORK, 2026, 11, 1, 8, 59), utc(2026, 11, 1, 14, 0)),
])
def test_us_daylight_saving_days_defer_to_nine_on_the_new_clock(now, expected):
    assert decide(CLEAR, POLICY, now) == Decision(Outcome.DEFERRED, Reason.QUIET_HOURS, expected)


@pytest.mark.parametrize("phone, zone, now, expected", [
    # Sydney starts DST on 2026-10-04 (02:00 AEST -> 03:00 AEDT, UTC+11).
    ("+61212345678", "Australia/Sydney", utc(2026, 10, 3, 17, 0), utc(2026, 10, 3, 22, 0)),
    # Sydney ends DST on 2027-04-04 (03:00 AEDT -> 02:00 AEST, UTC+10).
    ("+61212345678", "Australia/Sydney", utc(2027, 4, 3, 17, 0), utc(2027, 4, 3, 23, 0)),
    # London starts BST on 2027-03-28 at 01:00 UTC; 09:00 BST is 08:00 UTC.
    ("+442079460000", "Europe/London", utc(2027, 3, 28, 7, 30), utc(2027, 3, 28, 8, 0)),
    # London ends BST on 2026-10-25; 09:00 GMT is 09:00 UTC.
    ("+442079460000", "Europe/London", utc(2026, 10, 25, 7, 30), utc(2026, 10, 25, 9, 0)),
], ids=["sydney spring forward", "sydney fall back", "london spring forward",
        "london fall back"])
def test_daylight_saving_days_elsewhere_defer_to_nine_on_the_new_clock(phone, zone, now,
                                                                       expected):
    assert recipient_zones(phone, "UTC") == (zone,)
    ctx = replace(CLEAR, phone=phone, account_timezone=NEW_YORK)  # the number's zone decides
    assert decide(ctx, POLICY, now).defer_until == expected
    assert expected.astimezone(ZoneInfo(zone)).time() == NINE


# A Russian mobile range: phonenumbers places it in every zone from Europe/Bucharest (UTC+2) to
# Asia/Kamchatka and Asia/Anadyr (UTC+12).
RUSSIAN_MOBILE = "+79161234567"


def test_phonenumbers_places_the_russian_mobile_in_sixteen_zones():
    zones = recipient_zones(RUSSIAN_MOBILE, NEW_YORK)
    assert len(zones) == 16
    assert {"Europe/Moscow", "Europe/Bucharest", "Asia/Kamchatka", "Asia/Anadyr"} <= set(zones)


@pytest.mark.parametrize("now, expected", [
    # Winter: 09:00 in Kamchatka is 21:00 UTC, 20:00 in Bucharest (EET) is 18:00 UTC; the one
    # common hour is 07:00-08:00 UTC (Bucharest 09:00-10:00, Kamchatka 19:00-20:00).
    (utc(2026, 11, 26, 9, 0), utc(2026, 11, 27, 7, 0)),  # noon in Moscow, yet too late in the east
    (utc(2026, 11, 26, 6, 59), utc(2026, 11, 26, 7, 0)),  # 09:59 Moscow, too early in Bucharest
    (utc(2026, 11, 26, 7, 30), None),
    (utc(2026, 11, 26, 8, 0), utc(2026, 11, 27, 7, 0)),  # 20:00 in Kamchatka
    # Summer: Bucharest on EEST (UTC+3) widens the common window to 06:00-08:00 UTC.
    (utc(2026, 7, 26, 9, 0), utc(2026, 7, 27, 6, 0)),
    (utc(2026, 7, 26, 6, 0), None),
])
def test_a_number_in_several_zones_is_prompted_only_when_all_of_them_are_awake(now, expected):
    ctx = replace(CLEAR, phone=RUSSIAN_MOBILE, account_timezone="Europe/Moscow")
    assert decide(ctx, POLICY, now).defer_until == expected


def test_an_australian_mobile_waits_for_the_cocos_islands_and_stops_for_lord_howe():
    zones = recipient_zones("+61412345678", "UTC")
    assert {"Australia/Lord_Howe", "Australia/Sydney", "Australia/Perth",
            "Indian/Cocos"} <= set(zones)
    # November: Cocos (UTC+6:30) reaches 09:00 at 02:30 UTC; Lord Howe (UTC+11) hits 20:00 at
    # 09:00 UTC.
    assert next_allowed(utc(2026, 11, 26, 14, 0), zones, NINE, EIGHT_PM) == \
        utc(2026, 11, 27, 2, 30)
    assert next_allowed(utc(2026, 11, 26, 8, 59), zones, NINE, EIGHT_PM) == \
        utc(2026, 11, 26, 8, 59)
    assert next_allowed(utc(2026, 11, 26, 9, 0), zones, NINE, EIGHT_PM) == \
        utc(2026, 11, 27, 2, 30)


@pytest.mark.parametrize("now, expected", [
    # Winter: Honolulu UTC-10 and New York UTC-5 share 14:00-20:00 New York time.
    (utc(2026, 11, 26, 17, 0), utc(2026, 11, 26, 19, 0)),  # noon NY, 07:00 Honolulu
    (utc(2026, 11, 26, 19, 0), utc(2026, 11, 26, 19, 0)),
    (utc(2026, 11, 27, 0, 59), utc(2026, 11, 27, 0, 59)),
    (utc(2026, 11, 27, 1, 0), utc(2026, 11, 27, 19, 0)),
    # Summer: New York on EDT (UTC-4), Honolulu stays UTC-10: 15:00-20:00 New York time.
    (utc(2026, 7, 26, 16, 0), utc(2026, 7, 26, 19, 0)),
])
def test_zones_whose_windows_only_partly_overlap_meet_in_the_overlap(now, expected):
    zones = ("Pacific/Honolulu", NEW_YORK)
    assert next_allowed(now, zones, NINE, EIGHT_PM) == expected


def test_a_us_toll_free_number_spans_guam_to_newfoundland_and_shares_half_an_hour_in_winter():
    zones = recipient_zones("+18005551234", NEW_YORK)
    assert {"Pacific/Guam", "Pacific/Pago_Pago", "America/St_Johns"} <= set(zones)
    # 23:00 UTC is 09:00 in Guam (next day); 23:30 UTC is 20:00 in St John's (UTC-3:30).
    assert next_allowed(utc(2026, 11, 26, 14, 0), zones, NINE, EIGHT_PM) == \
        utc(2026, 11, 26, 23, 0)
    assert next_allowed(utc(2026, 11, 26, 23, 30), zones, NINE, EIGHT_PM) == \
        utc(2026, 11, 27, 23, 0)
    # Summer: St John's on UTC-2:30 closes before Guam opens; no common moment at all.
    with pytest.raises(NoCommonWindow):
        next_allowed(utc(2026, 7, 26, 14, 0), zones, NINE, EIGHT_PM)


def test_a_number_whose_zones_never_share_the_window_falls_back_to_the_account_zone():
    ctx = replace(CLEAR, phone="+18005551234", account_timezone=NEW_YORK)
    assert decide(ctx, POLICY, local(NEW_YORK, 2026, 7, 26, 12, 0)).outcome is Outcome.PROMPTED
    assert decide(ctx, POLICY, local(NEW_YORK, 2026, 7, 26, 21, 0)).defer_until == \
        local(NEW_YORK, 2026, 7, 27, 9, 0).astimezone(UTC)


def test_zones_twelve_hours_apart_have_no_common_window_and_raise_value_error():
    with pytest.raises(ValueError, match="no moment within 7 days"):
        next_allowed(utc(2026, 11, 26, 12, 0), ("Europe/London", "Pacific/Auckland"),
                     NINE, EIGHT_PM)


@pytest.mark.parametrize("phone", [None, "", "+80012345678", "not a number", "+15551234567"],
                         ids=["none", "empty", "international freephone", "garbage",
                              "unassigned us"])
def test_a_number_without_zone_information_falls_back_to_the_account_timezone(phone):
    assert recipient_zones(phone, "Asia/Tokyo") == ("Asia/Tokyo",)
    ctx = replace(CLEAR, phone=phone, account_timezone="Asia/Tokyo")
    # 12:00 UTC is 21:00 in Tokyo (and 07:00 in New York, which must not matter).
    assert decide(ctx, POLICY, utc(2026, 11, 26, 12, 0)).defer_until == utc(2026, 11, 27, 0, 0)


def test_a_whatsapp_address_is_placed_by_its_number():
    assert recipient_zones("whatsapp:+12125551234", "UTC") == (NEW_YORK,)


def test_next_allowed_jumps_to_the_moment_the_clock_skips_over_the_window_start():
    # On 2027-03-14 New York skips 02:00-03:00 local; a 02:30 start opens when the clock jumps.
    assert next_allowed(local(NEW_YORK, 2027, 3, 14, 1, 0), (NEW_YORK,), time(2, 30),
                        EIGHT_PM) == utc(2027, 3, 14, 7, 0)


def test_next_allowed_finds_a_window_entered_by_the_clock_falling_back():
    # Window 00:30-01:30: at 01:45 EDT it is closed; at 06:00 UTC the clock falls back to
    # 01:00 EST, inside the window again, without ever showing 00:30.
    now = local(NEW_YORK, 2026, 11, 1, 1, 45)
    assert next_allowed(now, (NEW_YORK,), time(0, 30), time(1, 30)) == utc(2026, 11, 1, 6, 0)


def test_a_window_across_midnight_is_open_from_its_start_to_its_end_the_next_morning():
    zones = (NEW_YORK,)
    assert next_allowed(local(NEW_YORK, 2026, 11, 26, 12), zones, time(22), time(6)) == \
        local(NEW_YORK, 2026, 11, 26, 22).astimezone(UTC)
    assert next_allowed(local(NEW_YORK, 2026, 11, 27, 2), zones, time(22), time(6)) == \
        local(NEW_YORK, 2026, 11, 27, 2).astimezone(UTC)


def test_next_allowed_answers_in_utc_with_the_same_instant_when_already_allowed():
    now = local(NEW_YORK, 2026, 11, 26, 12, 0, 0, 123456)
    answer = next_allowed(now, (NEW_YORK,), NINE, EIGHT_PM)
    assert answer == now and answer.tzinfo is UTC


@pytest.mark.parametrize("zones", [
    (NEW_YORK,), ("Pacific/Honolulu", NEW_YORK), ("Europe/London",), ("Australia/Sydney",),
    ("Australia/Lord_Howe", "Indian/Cocos"), recipient_zones(RUSSIAN_MOBILE, "UTC"),
], ids=["new york", "honolulu+new york", "london", "sydney", "lord howe+cocos", "russia"])
def test_next_allowed_agrees_with_a_minute_by_minute_walk_over_daylight_saving_weeks(zones):
    tzs = [ZoneInfo(z) for z in zones]

    def open_everywhere(instant):
        return all(NINE <= instant.astimezone(tz).time() < EIGHT_PM for tz in tzs)

    starts = [utc(2026, 3, 27, 0, 7), utc(2026, 10, 2, 0, 7), utc(2026, 10, 30, 0, 7),
              utc(2027, 3, 12, 0, 7), utc(2027, 4, 2, 0, 7)]
    for first in starts:
        for step in range(0, 4 * 24, 7):  # every 7 hours over four days
            now = first + timedelta(hours=step, minutes=step)
            answer = next_allowed(now, zones, NINE, EIGHT_PM)
            assert open_everywhere(answer)
            assert answer == now or not open_everywhere(answer - timedelta(seconds=1))
            minute = now
            while minute < answer:
                assert not open_everywhere(minute), (now, minute, answer)
                minute += timedelta(minutes=1)


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError, match="aware"):
        decide(CLEAR, POLICY, datetime(2026, 11, 26, 12, 0))
    with pytest.raises(ValueError, match="aware"):
        next_allowed(datetime(2026, 11, 26, 12, 0), (NEW_YORK,), NINE, EIGHT_PM)


# ---------------------------------------------------------------------------- quarters

@pytest.mark.parametrize("now, zone, expected", [
    (utc(2026, 11, 26, 15, 0), NEW_YORK, utc(2026, 10, 1, 4, 0)),  # EDT on Oct 1
    (local(NEW_YORK, 2027, 1, 1, 0, 30), NEW_YORK, utc(2027, 1, 1, 5, 0)),  # EST on Jan 1
    (local(NEW_YORK, 2026, 12, 31, 23, 59), NEW_YORK, utc(2026, 10, 1, 4, 0)),
    (utc(2027, 1, 1, 4, 59), NEW_YORK, utc(2026, 10, 1, 4, 0)),  # new year in UTC, not in NY
    # 16:00 UTC on Mar 31 is already 01:00 on Apr 1 in Tokyo: Q2 there, Q1 in UTC.
    (utc(2026, 3, 31, 16, 0), "Asia/Tokyo", utc(2026, 3, 31, 15, 0)),
    (utc(2026, 3, 31, 14, 59), "Asia/Tokyo", utc(2025, 12, 31, 15, 0)),
    (utc(2026, 5, 15, 12, 0), "UTC", utc(2026, 4, 1, 0, 0)),
    (utc(2026, 8, 1, 0, 0), "Australia/Sydney", utc(2026, 6, 30, 14, 0)),  # AEST, UTC+10
    # Asuncion skipped midnight on 2023-10-01 (00:00 -04 became 01:00 -03): the quarter
    # starts when the clock jumped, 04:00 UTC.
    (utc(2023, 11, 15, 12, 0), "America/Asuncion", utc(2023, 10, 1, 4, 0)),
], ids=["nov in new york", "jan 1 00:30 local", "dec 31 23:59 local", "jan 1 in utc only",
        "tokyo already in q2", "tokyo still in q1", "utc", "sydney", "midnight skipped"])
def test_the_quarter_starts_at_local_midnight_of_its_first_day(now, zone, expected):
    start = quarter_start(now, zone)
    assert start == expected and start.tzinfo is UTC


# ---------------------------------------------------------------------------- shapes

def test_a_decision_carries_a_reason_exactly_when_it_is_not_a_prompt():
    with pytest.raises(ValueError):
        Decision(Outcome.PROMPTED, Reason.CAP)
    with pytest.raises(ValueError):
        Decision(Outcome.SUPPRESSED, None)
    with pytest.raises(ValueError):
        Decision(Outcome.DEFERRED, Reason.QUIET_HOURS)  # deferred without a moment


def test_outcomes_and_reasons_are_the_codes_recorded_on_the_signal():
    assert [o.value for o in Outcome] == ["prompted", "deferred", "suppressed"]
    assert {r.value for r in Reason} == {"opted_out", "control", "health", "cooldown", "cap",
                                         "quiet_hours"}


@pytest.mark.parametrize("field, value", [
    ("cooldown", timedelta(days=-1)), ("prompts_per_quarter", -1),
    ("window_end", time(9, 0)), ("window_start", time(9, 0, tzinfo=UTC)),
])
def test_a_policy_that_cannot_work_is_refused_at_construction(field, value):
    with pytest.raises(DomainError) as err:
        GuardrailPolicy(**{field: value})
    assert err.value.code == "invalid_policy" and err.value.field == field
