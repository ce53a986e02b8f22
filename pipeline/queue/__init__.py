"""Case queue: where confirmed cases wait for review (SQLite now, Redis Streams next)."""

from pipeline.queue.base import CaseQueue, Delivery
from pipeline.queue.factory import open_queue
from pipeline.queue.sqlite_queue import SqliteCaseQueue

__all__ = ["CaseQueue", "Delivery", "SqliteCaseQueue", "open_queue"]
