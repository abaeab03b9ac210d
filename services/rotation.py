"""A rotation policy over dated items: which to keep and which to drop.

Reusable for anything that has a date: PIPER.md backups today, database dumps in `backups/<env>/`
tomorrow. The policy is the profile's `backups:` section (`Rotation`): keep the newest
`keep_last` items, plus the newest item of each of the last `keep_daily` days that have one, plus
the newest item of each of the last `keep_weekly` ISO weeks that have one. The newest item is kept
whatever the policy says, so a rotation can never leave nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Generic, NamedTuple, TypeVar

from services.profiles import Rotation

T = TypeVar("T")


class RotationPlan(NamedTuple, Generic[T]):
    """What a rotation keeps and what it drops, each newest first."""

    keep: list[T]
    drop: list[T]


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
