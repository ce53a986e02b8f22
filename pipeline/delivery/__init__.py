"""Delivery: rendered cases committed to a write-ahead spool, then delivered to the evidence store and the
case queue."""

from pipeline.delivery.drainer import Listener, SpoolDrainer
from pipeline.delivery.filer import CaseFiler, SpoolOutage
from pipeline.delivery.spool import CaseSpool, SpoolBusy, SpoolEntry

__all__ = ["CaseFiler", "CaseSpool", "Listener", "SpoolBusy", "SpoolDrainer", "SpoolEntry", "SpoolOutage"]
