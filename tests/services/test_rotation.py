"""plan_rotation: a reusable policy over dated items (PIPER.md backups today, dumps tomorrow)."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.profiles import Rotation
from services.rotation import plan_rotation


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
