"""The violation rules a zone enforces: a union discriminated on ``type``, with per-type defaults."""

from __future__ import annotations

from datetime import time
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipeline.types import Role

from .hours import HoursWindow
from .strict_model import Seconds, StrictModel

Containment = Literal["bottom_center", "overlap"]


# The per-type fields differ only in their defaults; these keep one description for each.
def _type_field() -> Any:
    return Field(description="Rule type; selects this rule's defaults.")


def _roles_field(default: list[Role]) -> Any:
    return Field(default, min_length=1, description="Detected roles this rule watches.")


def _containment_field(default: Containment) -> Any:
    return Field(
        default,
        description=(
            "When an object counts as inside the zone. 'bottom_center': the middle of its box's"
            " bottom edge (where a vehicle stands) lies in the polygon. 'overlap': at least"
            " min_overlap of its box area lies in the polygon."
        ),
    )


def _max_drift_field(default: float | None) -> Any:
    return Field(
        default,
        gt=0,
        description=(
            "How far the box may move within drift_window_s, as a fraction of the box's longer"
            " side, before the object counts as moving and its dwell restarts (a car crawling"
            " along is not parked). Only the shift both edges of the box share counts, so a box"
            " flickering between a tight and a loose fit is not movement. Relative, so it means"
            " the same for near and far objects. null: movement is ignored."
        ),
    )


class _RuleBase(StrictModel):
    drift_window_s: Seconds = Field(
        3.0,
        gt=0,
        description=(
            "Seconds of stream time over which movement is measured for max_drift. Measured over a"
            " sliding window rather than from where the dwell started, so a car that crept into"
            " its spot is not restarted later by detector jitter around the spot."
        ),
    )
    dwell_s: Seconds = Field(
        gt=0, description="Seconds (stream time) an object must stay in the zone to file a case."
    )
    hours: list[HoursWindow] = Field(
        [],
        description=(
            "Local-time windows 'HH:MM-HH:MM' (camera timezone) in which the rule is enforced;"
            " a window may wrap midnight ('22:00-06:00'). Empty: always. Dwell only accumulates"
            " inside a window."
        ),
    )
    min_overlap: float = Field(
        0.5,
        gt=0,
        le=1,
        description="With containment 'overlap': fraction of the box area that must lie in the zone.",
    )
    max_gap_s: Seconds = Field(
        5.0,
        gt=0,
        description=(
            "How long an object may go unseen (missed detections, a lost track) before its dwell"
            " restarts."
        ),
    )
    cooldown_s: Seconds = Field(
        120.0,
        ge=0,
        description=(
            "After a case's object was last seen, how long a matching object at the same place"
            " still belongs to that case instead of starting a new one."
        ),
    )
    match_iou: float = Field(
        0.4,
        gt=0,
        le=1,
        description=(
            "Box IoU at which a new track id is taken for the same object as an unseen candidate or"
            " case (trackers lose and renumber objects)."
        ),
    )
    event: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description=(
            "Entry of the event code table (--event-codes) this zone's cases are filed under, e.g."
            " shop_spillover (0504 店外经营) for stalls in front of shops. null: the entry named like"
            " the rule type. Checked against the table when the patrol starts."
        ),
    )

    @field_validator("event")
    @classmethod
    def _event_in_table(cls, event: str | None, info: ValidationInfo) -> str | None:
        # The table is the patrol's option, not part of the camera file: the loader is handed its
        # entries, so a misspelt entry stops the start instead of failing every case of the zone.
        entries = (info.context or {}).get("event_entries")
        if event is not None and entries is not None and event not in entries:
            raise ValueError(
                f"{event!r} is not an entry of the event code table (entries: {', '.join(sorted(entries))})"
            )
        return event

    @field_validator("roles", check_fields=False)
    @classmethod
    def _roles_the_rule_can_judge(cls, roles: list[Role]) -> list[Role]:
        # The default names every role that can commit the violation: a file may narrow it (only
        # garbage piles), never widen it (a parking rule watching people would file them as cars).
        allowed: list[Role] = cls.model_fields["roles"].default
        foreign = [role.value for role in roles if role not in allowed]
        if foreign:
            raise ValueError(
                f"this rule cannot watch {', '.join(foreign)}; it watches only {', '.join(allowed)}"
            )
        return roles

    @model_validator(mode="after")
    def _cooldown_covers_gap(self) -> _RuleBase:
        # A shorter cool-down would end a case during a gap that a candidate survives, so a
        # parked car missed for a few frames after confirmation would be filed twice.
        if self.cooldown_s < self.max_gap_s:
            raise ValueError(
                f"cooldown_s ({self.cooldown_s}) must be at least max_gap_s ({self.max_gap_s})"
            )
        return self

    def active_at(self, local: time) -> bool:
        """Whether the rule is enforced at this local time of day."""
        return not self.hours or any(window.contains(local) for window in self.hours)

    @property
    def quorum(self) -> int:
        """How many objects must dwell in the zone together before a case is filed; 1: each
        object is a case of its own (see ``NonmotorParkingRule.min_count``)."""
        return 1


class IllegalParkingRule(_RuleBase):
    """A vehicle standing still in the zone for dwell_s (违章停车)."""

    type: Literal["illegal_parking"] = _type_field()
    roles: list[Role] = _roles_field([Role.VEHICLE])
    containment: Containment = _containment_field("bottom_center")
    max_drift: float | None = _max_drift_field(0.25)


class StallEncroachmentRule(_RuleBase):
    """A vendor stall occupying the zone for dwell_s within the enforced hours (占道经营)."""

    type: Literal["stall_encroachment"] = _type_field()
    roles: list[Role] = _roles_field([Role.STALL])
    containment: Containment = _containment_field("overlap")
    max_drift: float | None = _max_drift_field(None)


class BinOverflowRule(_RuleBase):
    """An overflowing bin or a garbage pile in the zone for dwell_s (垃圾满溢/暴露垃圾)."""

    type: Literal["bin_overflow"] = _type_field()
    roles: list[Role] = _roles_field([Role.OVERFLOWING_BIN, Role.GARBAGE_PILE])
    containment: Containment = _containment_field("overlap")
    max_drift: float | None = _max_drift_field(None)


class NonmotorParkingRule(_RuleBase):
    """Bicycles and e-bikes parked in the zone for dwell_s (非机动车乱停放), counted as a heap
    when min_count is more than 1."""

    type: Literal["nonmotor_parking"] = _type_field()
    roles: list[Role] = _roles_field([Role.NON_MOTOR_VEHICLE])
    containment: Containment = _containment_field("bottom_center")
    max_drift: float | None = _max_drift_field(0.25)
    min_count: int = Field(
        1,
        ge=1,
        description=(
            "How many non-motor vehicles must have dwelt dwell_s in the zone together for a case (a"
            " bike or two at a rack is not one, a heap blocking the sidewalk is). Above 1, the heap"
            " is one case: bikes that join it later, or stay after its first bike left, are not"
            " filed again until the whole heap has been gone for cooldown_s. 1: every bike is a"
            " case of its own, like a parked car."
        ),
    )

    @property
    def quorum(self) -> int:
        return self.min_count


_RULE_MODELS = (IllegalParkingRule, StallEncroachmentRule, BinOverflowRule, NonmotorParkingRule)
RuleConfig = Annotated[
    IllegalParkingRule | StallEncroachmentRule | BinOverflowRule | NonmotorParkingRule,
    Field(discriminator="type"),
]
RULE_TYPES: tuple[str, ...] = tuple(get_args(model.model_fields["type"].annotation)[0] for model in _RULE_MODELS)
