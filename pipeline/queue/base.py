"""The case queue interface, shaped after Redis Streams consumer groups.

Every backend keeps the same semantics so the review side never changes when the backend does:

- a case is published once per ``case_id`` (replays and retried publishes are no-ops);
- within a consumer group each case is delivered to one consumer (``XREADGROUP``);
- a delivery stays pending until acknowledged (``XACK``);
- a pending delivery older than the visibility timeout is handed to the next consumer that asks,
  with ``attempts`` counting every hand-out (``XAUTOCLAIM`` and the stream's delivery counter);
- each record is read on its own: one this version cannot read comes as an :class:`UnreadableDelivery`
  beside the others of its batch, never failing them.

Delivery is therefore at-least-once: a consumer must tolerate seeing a case again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType

from pipeline.types import CaseNote, CaseRecord, MalformedRecord

REVIEW_GROUP = "review"
DEFAULT_VISIBILITY_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """One hand-out of a case to a consumer; pass ``delivery_id`` to :meth:`CaseQueue.ack`."""

    delivery_id: str
    record: CaseRecord
    attempts: int  # 1 on the first delivery, +1 on each redelivery

    @property
    def case_id(self) -> str:
        return self.record.case_id


@dataclass(frozen=True, slots=True)
class UnreadableDelivery:
    """A hand-out whose record this version cannot read (see :class:`MalformedRecord`); ``case_id`` is the
    one it was published under. It stays pending until acknowledged, like any other delivery."""

    delivery_id: str
    case_id: str
    attempts: int
    problem: str


def read_delivery(delivery_id: str, case_id: str, body: str, attempts: int) -> Delivery | UnreadableDelivery:
    try:
        return Delivery(delivery_id, CaseRecord.from_json(body), attempts)
    except MalformedRecord as exc:
        return UnreadableDelivery(delivery_id, case_id, attempts, str(exc))


class CaseQueue(ABC):
    """Durable queue of :class:`CaseRecord` with at-least-once delivery to one consumer group."""

    @abstractmethod
    def publish(self, record: CaseRecord) -> bool:
        """Enqueue ``record``; False, and nothing stored, if its ``case_id`` was seen before."""

    @abstractmethod
    def consume(self, consumer: str, count: int = 10, block_s: float = 0) -> list[Delivery | UnreadableDelivery]:
        """Up to ``count`` deliveries for ``consumer``: timed-out pending ones first, then new ones.

        Waits up to ``block_s`` seconds for at least one; returns ``[]`` if none came.
        """

    @abstractmethod
    def ack(self, delivery_id: str) -> None:
        """Mark a delivery done so it is never redelivered; acknowledging twice is harmless."""

    @abstractmethod
    def get(self, case_id: str) -> CaseRecord | None:
        """The published record with this ``case_id``, acknowledged or not."""

    @abstractmethod
    def add_note(self, note: CaseNote) -> bool:
        """Attach ``note`` to its published case; False, and nothing stored, if its ``note_id`` was seen.

        KeyError if the case was never published: a note never outruns its case.
        """

    @abstractmethod
    def notes(self, case_id: str) -> list[CaseNote]:
        """The notes of a case in the order they were added."""

    @abstractmethod
    def count(self) -> int:
        """Number of distinct cases ever published (acknowledged ones included)."""

    @abstractmethod
    def pending_count(self) -> int:
        """Deliveries handed to a consumer of this group and not yet acknowledged (``XPENDING``)."""

    @abstractmethod
    def close(self) -> None:
        """Release the backend connection; closing twice is harmless."""

    def __len__(self) -> int:
        return self.count()

    def __enter__(self) -> CaseQueue:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
