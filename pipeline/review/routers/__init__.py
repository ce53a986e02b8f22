"""The JSON API under /api, one router per resource (OpenAPI at /openapi.json, grouped by these tags)."""

from __future__ import annotations

from fastapi import APIRouter

from pipeline.review.routers import (
    cameras,
    case_map,
    cases,
    evidence,
    session,
    stats,
    triage,
    users,
    vocabulary,
    workflow,
)

OPENAPI_TAGS = [
    {"name": "session", "description": "Log in for a bearer token, log out, and who you are."},
    {"name": "cases", "description": "The case list, one case with its audit trail, and decisions on it (one "
                                     "or several at once); its plate, corrected; the cases it may repeat."},
    {"name": "evidence", "description": "A case's evidence files, its exported bundle and its printable dossier; "
                                        "each look is audited."},
    {"name": "stats", "description": "Figures for 考评 as JSON, CSV and XLSX (officers their own, supervisors all)."},
    {"name": "workflow", "description": "处置流程 after confirmation: 立案, 派遣, 上报处置 (photos), 核查, 结案; "
                                        "the units and deadlines."},
    {"name": "cameras", "description": "Cameras with their live state and health (supervisors, admins)."},
    {"name": "map", "description": "地图: cameras by their coordinates with their health, and the open cases at them."},
    {"name": "users", "description": "Review accounts (admins)."},
    {"name": "vocabulary", "description": "Chinese labels of the service's fixed values."},
]

api_router = APIRouter(prefix="/api")
for resource in (session, vocabulary, cases, triage, workflow, evidence, stats, cameras, case_map, users):
    api_router.include_router(resource.router)
