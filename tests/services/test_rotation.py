"""services/rotation.py: the one policy code over dated items (PIPER.md backups, database archives and their
safety copies), and when `backups.auto` asks for a backup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.profiles import Rotation
from services.rotation import AUTO_POLICIES, is_due, plan_grouped_rotation, plan_rotation


def _daily(days: int, start: datetime = datetime(2025, 3, 31, 12)) -> list[tuple[datetime, str]]:
    return [(start - timedelta(days=i), f"item-{i}") for i in range(days)]


def test_keep_last_only_keeps_the_newest_n() -> None:
    keep, drop = plan_rotation(_daily(5), Rotation(keep_last=2, keep_daily=0, keep_weekly=0))
    assert keep == ["item-0", "item-1"]
    assert drop == ["item-2", "item-3", "item-4"]


def test_daily_slots_keep_the_newest_of_each_day() -> None:
    base = datetime(2025, 3, 31, 9)
    items = [(base, "a-09h"), (base.replace(hour=18), "a-18h"), (base - timedelta(days=1), "b"),
             (base - timedelta(days=2), "c")]
    keep, drop = plan_rotation(items, Rotation(keep_last=1, keep_daily=2, keep_weekly=0))
    assert keep == ["a-18h", "b"]
    assert drop == ["a-09h", "c"]


def test_weekly_slots_keep_one_per_iso_week() -> None:
    keep, drop = plan_rotation(_daily(21), Rotation(keep_last=1, keep_daily=0, keep_weekly=3))
    # 2025-03-31 is a Monday: weeks 14, 13 and 12; the newest item of each is kept.
    assert keep == ["item-0", "item-1", "item-8"]
    assert len(drop) == 18


def test_newest_is_never_dropped_even_with_a_zero_policy() -> None:
    keep, drop = plan_rotation(_daily(3), Rotation(keep_last=0, keep_daily=0, keep_weekly=0))
    assert keep == ["item-0"]
    assert drop == ["item-1", "item-2"]


def test_unsorted_input_and_any_item_type() -> None:
    items = [(datetime(2025, 1, d), {"day": d}) for d in (3, 1, 2)]
    keep, drop = plan_rotation(items, Rotation(keep_last=1, keep_daily=0, keep_weekly=0))
    assert keep == [{"day": 3}]
    assert drop == [{"day": 2}, {"day": 1}]


def test_empty_input() -> None:
    assert plan_rotation([], Rotation()) == ([], [])


# --- backups.auto: when a backup is due by itself, and rotation by groups (issue 13) ---------------

def test_auto_hourly_daily_weekly_and_off() -> None:
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC).astimezone()  # a Wednesday
    local = now.tzinfo
    assert not is_due(Rotation(auto="off"), None, now)
    for policy in AUTO_POLICIES[1:]:
        assert is_due(Rotation(auto=policy), None, now)  # nothing yet: due
    hourly = Rotation(auto="hourly")
    assert not is_due(hourly, now - timedelta(minutes=59), now) and is_due(hourly, now - timedelta(minutes=60), now)
    daily = Rotation(auto="daily")
    today = datetime(2026, 12, 2, 0, 1, tzinfo=local)
    assert not is_due(daily, today, now) and is_due(daily, today - timedelta(minutes=2), now)  # yesterday, 23:59
    weekly = Rotation(auto="weekly")
    monday = datetime(2026, 11, 30, 0, 1, tzinfo=local)
    assert not is_due(weekly, monday, now) and is_due(weekly, monday - timedelta(minutes=2), now)


def test_grouped_rotation_keeps_each_group_by_the_same_policy() -> None:
    policy = Rotation(keep_last=2, keep_daily=0, keep_weekly=0)
    start = datetime(2026, 1, 10, 12)
    regular = [(start - timedelta(days=i), "regular", f"manual-{i}") for i in range(3)]
    safety = [(start + timedelta(hours=i), "safety", f"pre-restore-{i}") for i in range(5)]  # newer than all manual
    keep, drop = plan_grouped_rotation(regular + safety, policy)
    # Five restores never push out what was backed up on purpose: each group keeps its own two newest.
    assert keep == ["pre-restore-4", "pre-restore-3", "manual-0", "manual-1"]
    assert drop == ["pre-restore-2", "pre-restore-1", "pre-restore-0", "manual-2"]


def test_a_profiles_auto_policy_is_validated_like_the_rest_of_it(tmp_path) -> None:
    import pytest

    from services.errors import ProfileError
    from services.profiles import load_profile
    from tests.support.projects import make_project

    project = make_project(tmp_path / "proj", {"tester": {"backups": {"auto": False}},  # what YAML makes of `off`
                                               "alpha": {"backups": {"auto": "sometimes"}},
                                               "production": {"backups": {"auto": "daily"}},
                                               "dev": {"backups": {"auto": 1}}})
    assert load_profile("tester", project).backups.auto == "off"
    with pytest.raises(ProfileError, match=r"alpha.yaml: key 'backups.auto' is 'sometimes'; use one of: off, hourly"):
        load_profile("alpha", project)
    with pytest.raises(ProfileError, match=r"key 'backups.auto' must be off for a hosted database"):
        load_profile("production", project)
    with pytest.raises(ProfileError, match=r"key 'backups.auto' must be text, not int \(1\)"):
        load_profile("dev", project)
