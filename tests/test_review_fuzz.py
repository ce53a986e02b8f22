"""Property-based fuzzing of the review API from its own OpenAPI document (schemathesis).

Every operation gets generated requests, valid and invalid, sent with a real bearer token (an
admin's for /api/users, a supervisor's for the rest: the roles that reach deepest). Valid requests
are drawn both with made-up case ids and with the ids of real cases, so decisions, evidence and
bundles run for real. No answer may be a 5xx, and every answer must be one the document
declares, in the shape it declares.

schemathesis's own pytest fixture loader (``from_fixture``) does not run under pytest 9, so each
operation is a parametrized test that draws its cases from the schema's hypothesis strategy.
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from review_support import copy_of_street, login, running_app
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pipeline.review.routers import api_router

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 20  # 19 operations: under 400 requests, about half a minute on 2 cores


def _operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every API operation, from the routes alone (no app state needed to list them)."""
    bare = FastAPI()
    bare.include_router(api_router)
    return [(method.upper(), path) for path, item in bare.openapi()["paths"].items() for method in item]


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def review_api(tmp_path_factory):
    var = copy_of_street(tmp_path_factory, tmp_path_factory.mktemp("fuzz") / "var")
    with running_app(var) as client:
        tokens = {"supervisor": login(client, "chief"), "admin": login(client, "root")}
        case_ids = client.app.state.review.store.cases.all_case_ids()
        yield schemathesis.openapi.from_asgi("/openapi.json", client.app, headers=tokens["admin"]), tokens, case_ids


def test_every_operation_is_fuzzed():
    assert len(OPERATIONS) >= 17 and ("POST", "/api/cases/{case_id}/reject") in OPERATIONS


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_never_fails_and_keeps_its_contract(review_api, method, path):
    schema, tokens, case_ids = review_api
    headers = tokens["admin" if path == "/api/users" else "supervisor"]
    operation = schema[path][method]
    strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    if "{case_id}" in path:
        strategies += [operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"case_id": case_id})
                       for case_id in case_ids]

    @given(case=st.one_of(strategies))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def fuzz(case):
        case.call_and_validate(headers=headers, checks=CHECKS)

    fuzz()
