"""Case queue: where confirmed cases wait for review (SQLite on one box, Redis Streams across boxes)."""

from pipeline.queue.base import CaseQueue, Delivery, UnreadableDelivery
from pipeline.queue.factory import open_queue
from pipeline.queue.redis_queue import RedisCaseQueue
from pipeline.queue.sqlite_queue import SqliteCaseQueue

__all__ = ["CaseQueue", "Delivery", "RedisCaseQueue", "SqliteCaseQueue", "UnreadableDelivery", "open_queue"]
