"""Evidence: the stored proof of each case (pictures, clip, metadata) and its event coding."""

from pipeline.evidence.camera import CameraInfo
from pipeline.evidence.event_codes import (
    DEFAULT_EVENT_CODES_PATH,
    EventCode,
    EventCodeError,
    EventCodeTable,
    load_event_codes,
)
from pipeline.evidence.factory import open_evidence_store
from pipeline.evidence.local_store import LocalEvidenceStore
from pipeline.evidence.render import EvidenceRenderer, RenderedCase
from pipeline.evidence.s3_store import S3EvidenceStore
from pipeline.evidence.store import EvidenceStore, InvalidEvidenceKey
from pipeline.evidence.text import HersheyText, TrueTypeText, find_cjk_font

__all__ = [
    "DEFAULT_EVENT_CODES_PATH",
    "CameraInfo",
    "EventCode",
    "EventCodeError",
    "EventCodeTable",
    "EvidenceStore",
    "EvidenceRenderer",
    "HersheyText",
    "InvalidEvidenceKey",
    "LocalEvidenceStore",
    "RenderedCase",
    "S3EvidenceStore",
    "TrueTypeText",
    "find_cjk_font",
    "load_event_codes",
    "open_evidence_store",
]
