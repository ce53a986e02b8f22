"""Tiers, servers and the sample street's replay, for every test module.

Tiers: ``servers`` marks tests that start a server (redis-server, moto's S3, the GStreamer RTSP
server, headless Chromium, a `patrol` process serving on a port); ``realtime`` marks tests that play
video at real speed or wait out wall-clock dwells and timeouts; ``heavy`` marks tests that run the
network over a whole video or train, export or evaluate a model. ``make test-fast`` runs none.
A test that takes one of :data:`SERVER_FIXTURES` (:data:`REALTIME_FIXTURES`, a fixture defined with
``support.heavy_fixture``) is marked ``servers`` (``realtime``, ``heavy``) here, whatever its module.

Shared helpers live in ``support.py``; the paths are re-exported here for modules that import
them from ``conftest``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from support import (
    CAR_VIDEO,
    DEFAULT_MODEL,
    REPO,
    SAMPLE_CAMERA,
    SAMPLE_VIDEO,
    SHARED,
    RememberingDetector,
    Replay,
    sample_replay_once,
    shared_detector,
)

__all__ = ["CAR_VIDEO", "DEFAULT_MODEL", "REPO", "SAMPLE_CAMERA", "SAMPLE_VIDEO", "SHARED"]

# Real servers on loopback, each in its own plugin module.
pytest_plugins = ["fixture_redis", "fixture_s3", "fixture_rtsp", "fixture_review"]

# Fixtures that start a real server: a test that uses one, directly or through another fixture
# (or a parameter of one, via ``request.getfixturevalue``: mark that parameter), is ``servers``.
SERVER_FIXTURES = frozenset({"redis_server", "redis_url", "s3_server", "s3_env", "rtsp_server"})
# Fixtures whose users play video in real time: an RTSP server sends its files at their own pace.
REALTIME_FIXTURES = frozenset({"rtsp_server"})


def pytest_configure(config: pytest.Config) -> None:
    """Passwords hashed with argon2id at its cheapest: a login costs 0.6 ms of CPU instead of 175 ms,
    and the review tests log in about a thousand times (the way Django's docs advise a fast hasher
    in tests). What they check holds alike: argon2id hashes, verification, throttling, the limit on
    hashes at once. tests/test_login_memory.py runs a real `patrol serve` with the production cost."""
    from argon2 import PasswordHasher

    from pipeline.review import auth

    auth._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    auth._DUMMY_HASH = auth._hasher.hash("the hash an unknown name is checked against")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & SERVER_FIXTURES:
            item.add_marker(pytest.mark.servers)
        if used & REALTIME_FIXTURES:
            item.add_marker(pytest.mark.realtime)
        if _uses_a_heavy_fixture(item):
            item.add_marker(pytest.mark.heavy)
    # The slowest modules first: with whole modules per process (make test's loadfile), a slow one
    # coming last leaves the other processes idle while it runs alone. LONGEST_MODULES in their
    # order, then the others by their count of tests that play video in real time, run a model over
    # a video or start a server. Stable: a module's tests keep their order.
    weight = Counter(_module_of(item) for item in items if _is_slow(item))
    items.sort(key=lambda item: (_rank_of(item), -weight[_module_of(item)]))


# The modules that take longest, longest first (seconds of a full run on 2 cores, 2026-12-07: 122,
# 116, 103, 102, 56, 56, 55, 39, 38, 34, 32, 31); a count of slow tests misjudges them (the fleet's
# two scenarios take two minutes, the evidence store's thirty S3 tests three seconds).
LONGEST_MODULES = ("test_fleet", "test_nothing_lost", "test_bench", "test_patrol", "test_retrain",
                   "test_rtsp_sub_main", "test_review_api", "test_rtsp", "test_shadow", "test_model_workflow",
                   "test_train_smoke", "test_durable_confirmation")


def _rank_of(item: pytest.Item) -> int:
    name = Path(_module_of(item)).stem
    return LONGEST_MODULES.index(name) if name in LONGEST_MODULES else len(LONGEST_MODULES)


def _is_slow(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(marker) for marker in ("realtime", "heavy", "servers"))


def _module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _uses_a_heavy_fixture(item: pytest.Item) -> bool:
    definitions = getattr(item, "_fixtureinfo", None)
    return definitions is not None and any(
        getattr(definition.func, "heavy", False)
        for chain in definitions.name2fixturedefs.values() for definition in chain)


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared is missing: tests need the real data beside the repo ({SHARED})")
    return SHARED


@pytest.fixture(scope="session")
def detector(tmp_path_factory) -> RememberingDetector:
    """The project's model, loaded once for the session, remembering the frames any process of the
    test run has seen (``support.shared_detector``): a test replaying the sample again waits for no
    inference."""
    return shared_detector(tmp_path_factory)


@pytest.fixture(scope="session")
def sample_replay(tmp_path_factory) -> Replay:
    """The whole sample street replayed once for the session (``support.sample_replay_once``),
    for tests that only read what it filed (cases.jsonl, evidence, queue): never write under its
    ``out``; copy it to change it."""
    return sample_replay_once(tmp_path_factory)
