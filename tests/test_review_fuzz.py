"""Property-based fuzzing of the review API from its own OpenAPI document (schemathesis).

Every operation gets generated requests, valid and invalid, sent with a real bearer token (an
admin's for /api/users..., a supervisor's for the rest: the roles that reach deepest). Valid requests
are drawn both with made-up case ids and with the ids of real cases, so decisions, evidence and
bundles run for real. No answer may be a 5xx, and every answer must be one the document
declares, in the shape it declares: every error answer declares its body, and the refusals of
business rules, which random requests seldom reach, are sent on purpose.

schemathesis's own pytest fixture loader (``from_fixture``) does not run under pytest 9, so each
operation is a parametrized test that draws its cases from the schema's hypothesis strategy.
"""

from __future__ import annotations

from contextlib import contextmanager

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
EXAMPLES_PER_OPERATION = 20  # 25 operations: about 500 requests, under a minute on 2 cores


def _document() -> dict:
    """The API's OpenAPI document, from the routes alone (no app state needed to make it)."""
    bare = FastAPI()
    bare.include_router(api_router)
    return bare.openapi()


def _operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every API operation."""
    return [(method.upper(), path) for path, item in _document()["paths"].items() for method in item]


OPERATIONS = _operations()


@contextmanager
def _api(tmp_path_factory, name: str):
    var = copy_of_street(tmp_path_factory, tmp_path_factory.mktemp(name) / "var")
    with running_app(var) as client:
        tokens = {"supervisor": login(client, "chief"), "admin": login(client, "root")}
        case_ids = client.app.state.review.store.cases.all_case_ids()
        yield schemathesis.openapi.from_asgi("/openapi.json", client.app, headers=tokens["admin"]), tokens, case_ids


@pytest.fixture(scope="module")
def review_api(tmp_path_factory):
    with _api(tmp_path_factory, "fuzz") as api:
        yield api


def test_every_operation_is_fuzzed():
    assert len(OPERATIONS) >= 25 and ("POST", "/api/cases/{case_id}/reject") in OPERATIONS
    assert ("POST", "/api/users/{name}/disable") in OPERATIONS


def test_every_error_answer_declares_its_body():
    """A client reads ``detail`` of every refusal: a string (ErrorOut), or for 422 FastAPI's list of errors."""
    for path, item in _document()["paths"].items():
        for method, operation in item.items():
            for code, answer in operation["responses"].items():
                if code.startswith("4"):
                    body = answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
                    expected = "HTTPValidationError" if code == "422" else "ErrorOut"
                    assert body == f"#/components/schemas/{expected}", f"{method} {path} {code}: {answer}"


def test_business_rule_refusals_keep_the_contract(tmp_path_factory):
    with _api(tmp_path_factory, "rules") as (schema, tokens, case_ids):
        def sent(path: str, method: str, role: str, **request) -> int:
            case = schema[path][method].Case(**request)
            return case.call_and_validate(headers=tokens[role], checks=CHECKS).status_code

        case_id = next(case_id for case_id in case_ids if case_id.startswith("P-"))
        other = next(other for other in case_ids if other.startswith("P-") and other != case_id)
        in_path = {"path_parameters": {"case_id": case_id}}
        assert sent("/api/cases", "GET", "supervisor", query={"since": "1700000000"}) == 422
        assert sent("/api/cases/{case_id}/reject", "POST", "supervisor", **in_path,
                    body={"reason": "other", "note": " "}) == 400
        assert sent("/api/cases/{case_id}/duplicate", "POST", "supervisor", **in_path,
                    body={"duplicate_of": case_id}) == 400
        assert sent("/api/cases/{case_id}/assign", "POST", "supervisor", **in_path, body={"assignee": "root"}) == 400
        assert sent("/api/cases/{case_id}/confirm", "POST", "supervisor", **in_path, body={}) == 200
        assert sent("/api/cases/{case_id}/confirm", "POST", "supervisor", **in_path, body={}) == 409
        assert sent("/api/cases/{case_id}/reopen", "POST", "supervisor", **in_path, body={"note": " "}) == 400
        assert sent("/api/cases/{case_id}/reopen", "POST", "supervisor", path_parameters={"case_id": other},
                    body={"note": "复核"}) == 409
        assert sent("/api/me/password", "POST", "supervisor",
                    body={"current_password": "not-the-password", "new_password": "a-new-password"}) == 400
        assert sent("/api/users", "POST", "admin", body={"name": "chief", "role": "officer",
                                                         "password": "a-long-password"}) == 409
        assert sent("/api/users/{name}/disable", "POST", "admin", path_parameters={"name": "root"}) == 409
        assert sent("/api/users/{name}/role", "POST", "admin", path_parameters={"name": "nobody"},
                    body={"role": "officer"}) == 404


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_never_fails_and_keeps_its_contract(review_api, method, path):
    schema, tokens, case_ids = review_api
    headers = tokens["admin" if path.startswith("/api/users") else "supervisor"]
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
