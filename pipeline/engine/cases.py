"""From a camera's violation to a committed case: render the evidence, then hand it to delivery.

A case goes to the spool when it is confirmed, with the clip recorded so far, and its clip is
completed once the post-roll is in: a worker killed in between has filed it, its clip short.
"""

from __future__ import annotations

import logging
import threading
from functools import partial

from pipeline.delivery import CaseFiler
from pipeline.engine.camera import CameraPipeline
from pipeline.evidence import CameraInfo, EvidenceRenderer, RenderedCase
from pipeline.evidence.main_frame import on_main_stream
from pipeline.evidence.render import CLIP_AFTER_S, CLIP_BEFORE_S, CameraFault
from pipeline.ingest import ClipError
from pipeline.ingest.dual import DualRing
from pipeline.types import CaseNote, Violation

log = logging.getLogger(__name__)


class CaseMaker:
    """Renders each violation of a camera (pictures, the clip from its packet ring, metadata) and
    commits it through ``filer``; ``model`` is the detector's record that every case carries."""

    def __init__(self, renderer: EvidenceRenderer, filer: CaseFiler, model: dict) -> None:
        self.renderer = renderer
        self.filer = filer
        self.model = model
        self._recording: dict[str, RenderedCase] = {}  # as rendered, on the spool, its clip still recorded
        self._lock = threading.Lock()

    def file(self, camera: CameraPipeline, violation: Violation) -> None:
        """At confirmation: renders the case with the clip recorded so far and commits it, its clip
        pending until ``complete``; raises if it cannot be rendered. The case stays unfiled on
        ``camera`` until it is on the spool, which on a full disk is after the disk has room again."""
        if not self.filer.needs_filing(violation.case_id):
            camera.filed(violation.case_id)
            return
        until_s = self._recorded_until(camera, violation.confirmed_s)
        case = self.render(camera, violation)
        self.filer.commit(self._clipped(camera, case, until_s), partial(camera.filed, violation.case_id), pending=True)
        with self._lock:
            self._recording[violation.case_id] = case

    def complete(self, camera: CameraPipeline, case_id: str, *, post_roll_seen: bool = True) -> None:
        """Gives the case filed at its confirmation the clip recorded since and releases it for
        delivery: once its post-roll has been seen, or (``post_roll_seen`` False) when no more of
        it will be. Call it once ``file`` of the case has returned."""
        with self._lock:
            case = self._recording.pop(case_id, None)
        if case is None:  # filed before, or never rendered
            return
        confirmed_s = case.record.confirmed_s
        until_s = confirmed_s + CLIP_AFTER_S if post_roll_seen else self._recorded_until(camera, confirmed_s)
        self.filer.complete(self._clipped(camera, case, until_s))

    def render(self, camera: CameraPipeline, violation: Violation) -> RenderedCase:
        if isinstance(camera.ring, DualRing):  # detect_url: pictures and clip from the main stream when it holds them
            shown = on_main_stream(camera.ring, violation, clip_s=(violation.confirmed_s - CLIP_BEFORE_S,
                                                                   violation.confirmed_s + CLIP_AFTER_S))
            zone = next(z for z in camera.camera.zones if z.id == violation.zone_id)
            return self.renderer.render(shown.violation, camera=camera.info,
                                        zone_polygon_px=zone.polygon_px(shown.violation.trigger_frame.size),
                                        clip_mp4=shown.clip, model=self.model, streams=shown.streams)
        try:
            clip = camera.ring.clip(violation.confirmed_s - CLIP_BEFORE_S, violation.confirmed_s + CLIP_AFTER_S)
        except (ClipError, OSError, ValueError) as exc:  # a case without a clip beats no case
            log.warning("case %s: no clip: %s", violation.case_id, exc)
            clip = None
        zone = next(z for z in camera.camera.zones if z.id == violation.zone_id)
        return self.renderer.render(violation, camera=camera.info,
                                    zone_polygon_px=zone.polygon_px(violation.trigger_frame.size),
                                    clip_mp4=clip, model=self.model)

    def file_fault_with_note(self, camera: CameraInfo, fault: CameraFault, note: CaseNote) -> bool:
        """Commits a fault case of ``camera`` and then its note saying what failed (a camera's, a
        main stream's, a spool outage's: ``faults``); False, filing nothing, when the case is spooled
        or filed already."""
        if not self.filer.needs_filing(fault.case_id):
            return False
        self.filer.commit(self.renderer.render_camera_fault(fault, camera=camera, model=self.model))
        self.filer.add_note(note)
        return True

    @staticmethod
    def _recorded_until(camera: CameraPipeline, confirmed_s: float) -> float:
        """How far past ``confirmed_s`` the camera's ring reaches, up to the end of the post-roll."""
        span = camera.ring.span
        return min(span[1] if span is not None else confirmed_s, confirmed_s + CLIP_AFTER_S)

    @staticmethod
    def _clipped(camera: CameraPipeline, case: RenderedCase, until_s: float) -> RenderedCase:
        """``case`` with the clip up to ``until_s``; its record says so when that is short of the post-roll."""
        confirmed_s = case.record.confirmed_s
        try:
            clip = camera.ring.clip(confirmed_s - CLIP_BEFORE_S, until_s)
        except (ClipError, OSError, ValueError):  # rendering has said so: a case without a clip beats no case
            clip = None
        short = clip is not None and until_s < confirmed_s + CLIP_AFTER_S
        return case.with_clip(clip, clip_until_s=round(until_s, 3) if short else None)
