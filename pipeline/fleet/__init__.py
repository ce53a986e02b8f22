"""Scaling out: workers share the cameras through leases in Redis (the queue's own server)."""

from .leases import LeaseBoard, connect
from .memory import RedisEpisodeMemory
from .shares import fair_shares
from .worker import FleetWorker, measure_capacity

__all__ = ["FleetWorker", "LeaseBoard", "RedisEpisodeMemory", "connect", "fair_shares", "measure_capacity"]
