"""Pytest fixtures of the review service's tests: a private copy of the replayed street, and the
service over it in a TestClient."""

from __future__ import annotations

import pytest
from review_support import copy_of_street, running_app


@pytest.fixture
def street_var(tmp_path_factory, tmp_path):
    """A private copy of the replayed street (made once per session): this test's decisions are its own."""
    return copy_of_street(tmp_path_factory, tmp_path / "var")


@pytest.fixture
def client(street_var):
    with running_app(street_var) as client:
        yield client
