"""The camera board: every camera with its live state and health."""

from __future__ import annotations

from fastapi import APIRouter

from pipeline.review.routers.dependencies import FORBIDDEN, CameraViewer, Review
from pipeline.review.schemas import CameraBoardOut

router = APIRouter(tags=["cameras"])


@router.get("/cameras", response_model=CameraBoardOut, responses=FORBIDDEN,
            summary="Cameras with live state and health from the workers' /metrics")
def cameras(caller: CameraViewer, review: Review) -> CameraBoardOut:
    return CameraBoardOut.of(review.cameras.snapshot())
