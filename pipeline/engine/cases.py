"""From a camera's violation to a committed case: render the evidence, then hand it to delivery."""

from __future__ import annotations

import logging

from pipeline.delivery import CaseFiler
from pipeline.engine.camera import CameraPipeline
from pipeline.evidence import EvidenceRenderer, RenderedCase
from pipeline.evidence.render import CLIP_AFTER_S, CLIP_BEFORE_S, CameraFault
from pipeline.ingest import ClipError
from pipeline.types import Violation

log = logging.getLogger(__name__)


class CaseMaker:
    """Renders each violation of a camera (pictures, the clip from its packet ring, metadata) and
    commits it through ``filer``; ``model`` is the detector's record that every case carries."""

    def __init__(self, renderer: EvidenceRenderer, filer: CaseFiler, model: dict) -> None:
        self.renderer = renderer
        self.filer = filer
        self.model = model

    def file(self, camera: CameraPipeline, violation: Violation) -> None:
        """Renders and commits the case; raises if it cannot be rendered. The case stays unfiled on
        ``camera`` until it is on the spool, which on a full disk is after the disk has room again."""
        if self.filer.needs_filing(violation.case_id):
            self.filer.commit(self.render(camera, violation), then=lambda: camera.filed(violation.case_id))
        else:
            camera.filed(violation.case_id)

    def render(self, camera: CameraPipeline, violation: Violation) -> RenderedCase:
        try:
            clip = camera.ring.clip(violation.confirmed_s - CLIP_BEFORE_S, violation.confirmed_s + CLIP_AFTER_S)
        except (ClipError, OSError, ValueError) as exc:  # a case without a clip beats no case
            log.warning("case %s: no clip: %s", violation.case_id, exc)
            clip = None
        zone = next(z for z in camera.camera.zones if z.id == violation.zone_id)
        return self.renderer.render(violation, camera=camera.info,
                                    zone_polygon_px=zone.polygon_px(violation.trigger_frame.size),
                                    clip_mp4=clip, model=self.model)

    def file_fault(self, camera: CameraPipeline, fault: CameraFault) -> None:
        self.filer.commit(self.renderer.render_camera_fault(fault, camera=camera.info, model=self.model))
