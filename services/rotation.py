"""Backup policies: how many dated items to keep (rotation), and when a backup is due by itself.

One policy code for every kind of dated backup: PIPER.md backups (config/backup-policy.yaml, one
policy for the project), and each environment's database archives in `backups/<env>/` (the
profile's `backups:` section), where manual and scheduled archives and the safety copies that
db-restore and teardown take first are rotated each as their own group, by the same policy.

Rotation keeps the newest `keep_last` items, plus the newest item of each of the last
`keep_daily` days that have one, plus the newest item of each of the last `keep_weekly` ISO
weeks that have one. The newest item is kept whatever the policy says, so a rotation can never
leave nothing behind.

`auto` (profiles only) says when `setup`, `db-start` and `db-stop` take a backup by themselves:
`off`, `hourly` (the newest archive is an hour old or more), `daily` (none yet today, local
time), `weekly` (none yet this ISO week).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar

T = TypeVar("T")
#: The values of `backups.auto`, in order of frequency.
AUTO_POLICIES = ("off", "hourly", "daily", "weekly")
_COUNTS = ("keep_last", "keep_daily", "keep_weekly")


@dataclass(frozen=True)
class Rotation:
    """How many dated backups to keep (the newest N, one per day, one per ISO week), and when one is due."""

    keep_last: int = 10
    keep_daily: int = 7
    keep_weekly: int = 4
    auto: str = "off"

    def describe(self) -> str:
        """Return the rotation in the words of its file: keep_last=N, keep_daily=N, keep_weekly=N."""
        return f"keep_last={self.keep_last}, keep_daily={self.keep_daily}, keep_weekly={self.keep_weekly}"


class RotationPlan(NamedTuple, Generic[T]):
    """What a rotation keeps and what it drops, each newest first."""

    keep: list[T]
    drop: list[T]


def check_policy(policy: Rotation, fail: Callable[[str, str], None], *, prefix: str = "backups.",
                 hosted: bool = False, auto_allowed: bool = True) -> None:
    """Call fail(key, problem) for the first value of the policy that is wrong."""
    for key in _COUNTS:
        if getattr(policy, key) < 0:
            fail(f"{prefix}{key}", "must be zero or more")
    if policy.keep_last < 1:
        fail(f"{prefix}keep_last", "must keep at least the newest backup (1 or more)")
    if policy.auto not in AUTO_POLICIES:
        fail(f"{prefix}auto", f"is {policy.auto!r}; use one of: {', '.join(AUTO_POLICIES)}")
    if policy.auto != "off" and not auto_allowed:
        fail(f"{prefix}auto", "is for database backups in a profile; remove it here")
    if policy.auto != "off" and hosted:
        fail(f"{prefix}auto", "must be off for a hosted database (its provider backs it up)")


def policy_from_mapping(raw: Any, fail: Callable[[str, str], None]) -> Rotation:
    """Return the rotation of a mapping {keep_last, keep_daily, keep_weekly} (each optional), checked."""
    if not isinstance(raw, dict):
        fail("(top level)", "must be a mapping of keep_last, keep_daily and keep_weekly")
    values = {}
    for key, value in raw.items():
        if key not in _COUNTS:
            fail(str(key), f"is unknown; known keys: {', '.join(_COUNTS)}")
        if isinstance(value, bool) or not isinstance(value, int):
            fail(key, f"must be a whole number, not {type(value).__name__} ({value!r})")
        values[key] = value
    policy = Rotation(**values)
    check_policy(policy, fail, prefix="", auto_allowed=False)
    return policy


def is_due(policy: Rotation, newest: datetime | None, now: datetime) -> bool:
    """Return whether `auto` asks for a backup now, the newest existing one taken at `newest` (aware)."""
    if policy.auto == "off":
        return False
    if newest is None:
        return True
    if policy.auto == "hourly":
        return now - newest >= timedelta(hours=1)
    here, then = now.astimezone(), newest.astimezone()
    if policy.auto == "daily":
        return then.date() < here.date()
    return then.isocalendar()[:2] < here.isocalendar()[:2]


def plan_rotation(items: Sequence[tuple[datetime, T]], policy: Rotation) -> RotationPlan[T]:
    """Return which items the policy keeps and which it drops; never drops the newest item."""
    ordered = sorted(items, key=lambda pair: pair[0], reverse=True)
    kept: set[int] = set()
    for index in range(min(max(policy.keep_last, 1), len(ordered))):
        kept.add(index)
    _keep_first_per_slot(ordered, policy.keep_daily, lambda moment: moment.date(), kept)
    _keep_first_per_slot(ordered, policy.keep_weekly, lambda moment: moment.isocalendar()[:2], kept)
    keep = [item for index, (_, item) in enumerate(ordered) if index in kept]
    drop = [item for index, (_, item) in enumerate(ordered) if index not in kept]
    return RotationPlan(keep, drop)


def plan_grouped_rotation(items: Sequence[tuple[datetime, str, T]], policy: Rotation) -> RotationPlan[T]:
    """Rotate each group (the middle field) on its own by the same policy; return the plans merged, newest first."""
    keep: list[tuple[datetime, T]] = []
    drop: list[tuple[datetime, T]] = []
    for group in dict.fromkeys(g for _, g, _ in items):
        members = [(moment, (moment, item)) for moment, g, item in items if g == group]
        plan = plan_rotation(members, policy)
        keep += plan.keep
        drop += plan.drop
    order = lambda pair: pair[0]  # noqa: E731
    return RotationPlan([i for _, i in sorted(keep, key=order, reverse=True)],
                        [i for _, i in sorted(drop, key=order, reverse=True)])


def _keep_first_per_slot(ordered: list[tuple[datetime, T]], slots: int, slot_of, kept: set[int]) -> None:
    # Newest first: the first item seen in a slot (a day, a week) is that slot's newest.
    seen: list[object] = []
    for index, (moment, _) in enumerate(ordered):
        slot = slot_of(moment)
        if slot in seen:
            continue
        if len(seen) >= slots:
            break
        seen.append(slot)
        kept.add(index)
