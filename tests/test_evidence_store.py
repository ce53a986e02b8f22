"""The evidence store contract, held by every backend: local disk and S3 (moto's server over HTTP)."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fixture_s3 import S3Server

from pipeline.evidence import (
    EvidenceStore,
    InvalidEvidenceKey,
    LocalEvidenceStore,
    S3EvidenceStore,
    open_evidence_store,
)
from pipeline.evidence.s3_store import RETRIES
from pipeline.types import BackendUnavailable

FRAME = "2024-05-02/cam-07/a/frame.jpg"


def _s3_store(env: dict[str, str]) -> S3EvidenceStore:
    return S3EvidenceStore(env["S3_ENDPOINT"], env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"], env["S3_BUCKET"])


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.servers)])
def evidence_store(request: pytest.FixtureRequest, tmp_path: Path) -> EvidenceStore:
    if request.param == "local":
        return LocalEvidenceStore(tmp_path / "evidence")
    return _s3_store(request.getfixturevalue("s3_env"))


# Backend-specific behaviour; S3-only tests take the s3_env fixture directly.
only_local = pytest.mark.parametrize("evidence_store", ["local"], indirect=True)


# --- the contract, on every backend ----------------------------------------------------------


def test_store_round_trip_and_listing(evidence_store: EvidenceStore) -> None:
    item = evidence_store.put(FRAME, b"one", "image/jpeg")
    evidence_store.put("2024-05-02/cam-07/b/frame.jpg", b"two", "image/jpeg")
    evidence_store.put(FRAME, b"three", "image/jpeg")

    assert (item.key, item.sha256, item.content_type) == (FRAME, hashlib.sha256(b"one").hexdigest(), "image/jpeg")
    assert evidence_store.get(FRAME) == b"three"
    assert evidence_store.exists("2024-05-02/cam-07/b/frame.jpg")
    assert not evidence_store.exists("2024-05-02/cam-07/c/frame.jpg")
    assert evidence_store.keys("2024-05-02/cam-07/a") == [FRAME]
    assert evidence_store.keys() == [FRAME, "2024-05-02/cam-07/b/frame.jpg"]
    assert evidence_store.keys("2024-05-03/") == []
    with pytest.raises(KeyError):
        evidence_store.get("2024-05-02/cam-07/c/frame.jpg")


def test_listing_is_sorted_and_matches_a_plain_string_prefix(evidence_store: EvidenceStore) -> None:
    for key in ["b/2.jpg", "a/x/1.jpg", "ab/1.jpg", "a/1.jpg"]:
        evidence_store.put(key, b"x", "image/jpeg")

    assert evidence_store.keys() == ["a/1.jpg", "a/x/1.jpg", "ab/1.jpg", "b/2.jpg"]
    assert evidence_store.keys("a") == ["a/1.jpg", "a/x/1.jpg", "ab/1.jpg"]
    assert evidence_store.keys("a/") == ["a/1.jpg", "a/x/1.jpg"]


def test_empty_store_has_nothing(evidence_store: EvidenceStore) -> None:
    # On S3 the bucket does not exist yet: that is an empty store, not an error.
    assert evidence_store.keys() == []
    assert not evidence_store.exists(FRAME)
    for lookup in (evidence_store.get, evidence_store.sha256_of, evidence_store.url_for):
        with pytest.raises(KeyError):
            lookup(FRAME)


def test_sha256_of_matches_the_stored_bytes(evidence_store: EvidenceStore) -> None:
    clip = bytes(range(256)) * 1000
    item = evidence_store.put("2024-05-02/cam-07/a/clip.mp4", clip, "video/mp4")
    evidence_store.put("2024-05-02/cam-07/a/empty.bin", b"", "application/octet-stream")

    assert evidence_store.sha256_of(item.key) == item.sha256 == hashlib.sha256(clip).hexdigest()
    assert evidence_store.sha256_of("2024-05-02/cam-07/a/empty.bin") == hashlib.sha256(b"").hexdigest()
    assert evidence_store.get("2024-05-02/cam-07/a/empty.bin") == b""
    evidence_store.put(item.key, b"replaced", "video/mp4")
    assert evidence_store.sha256_of(item.key) == hashlib.sha256(b"replaced").hexdigest()


def test_keys_with_spaces_and_chinese_names_round_trip(evidence_store: EvidenceStore) -> None:
    key = "2024-05-02/人民路 东/P-1+2/frame.jpg"
    evidence_store.put(key, b"x", "image/jpeg")

    assert evidence_store.get(key) == b"x"
    assert evidence_store.keys("2024-05-02/人民路") == [key]
    assert evidence_store.sha256_of(key) == hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize(
    "key", ["../outside.jpg", "a/../../outside.jpg", "/etc/passwd", "", "a//b.jpg", "a\\b.jpg", "a/.hidden.jpg"]
)
def test_keys_that_escape_or_are_not_plain_paths_are_rejected(evidence_store: EvidenceStore, key: str) -> None:
    with pytest.raises(InvalidEvidenceKey):
        evidence_store.put(key, b"x", "image/jpeg")
    for lookup in (evidence_store.get, evidence_store.exists, evidence_store.sha256_of, evidence_store.url_for):
        with pytest.raises(InvalidEvidenceKey):
            lookup(key)
    assert evidence_store.keys() == []


@pytest.mark.parametrize("prefix", ["../", "a/../../", "a//"])
def test_listing_cannot_walk_outside_the_root(evidence_store: EvidenceStore, prefix: str) -> None:
    # Refused on S3 too, where nothing lies outside the bucket: one rule for every backend.
    with pytest.raises(InvalidEvidenceKey):
        evidence_store.keys(prefix)


def test_url_for_is_none_or_fetches_the_exact_bytes(evidence_store: EvidenceStore) -> None:
    data = bytes(range(256)) * 64
    evidence_store.put(FRAME, data, "image/jpeg")

    url = evidence_store.url_for(FRAME, expires_s=60)
    if isinstance(evidence_store, LocalEvidenceStore):
        assert url is None  # the review service serves local files itself
    else:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == data


@pytest.mark.parametrize("expires_s", [0, 0.5, -1, 7 * 24 * 3600 + 1])
def test_url_expiry_outside_one_second_to_seven_days_is_refused(
    evidence_store: EvidenceStore, expires_s: float
) -> None:
    evidence_store.put(FRAME, b"x", "image/jpeg")
    with pytest.raises(ValueError, match="7 days"):
        evidence_store.url_for(FRAME, expires_s=expires_s)


# --- local disk only -----------------------------------------------------------------------


@only_local
def test_no_temporary_file_is_left_beside_the_evidence(evidence_store: LocalEvidenceStore) -> None:
    evidence_store.put(FRAME, b"one", "image/jpeg")
    evidence_store.put(FRAME, b"two", "image/jpeg")
    assert [p.name for p in (evidence_store.root / "2024-05-02/cam-07/a").iterdir()] == ["frame.jpg"]


@only_local
def test_symlink_out_of_the_root_is_rejected(evidence_store: LocalEvidenceStore, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (evidence_store.root / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InvalidEvidenceKey, match="outside"):
        evidence_store.put("link/frame.jpg", b"x", "image/jpeg")
    assert not (tmp_path / "elsewhere/frame.jpg").exists()


@only_local
def test_local_sha256_is_of_the_file_as_it_is_now(evidence_store: LocalEvidenceStore) -> None:
    evidence_store.put(FRAME, b"as written", "image/jpeg")
    (evidence_store.root / FRAME).write_bytes(b"tampered")
    assert evidence_store.sha256_of(FRAME) == hashlib.sha256(b"tampered").hexdigest()


# --- S3 only -------------------------------------------------------------------------------


def test_bucket_is_created_on_the_first_write_only(s3_env: dict[str, str], s3_server: S3Server) -> None:
    plain = s3_server.client()
    store = _s3_store(s3_env)
    assert store.keys() == [] and not store.exists(FRAME)
    assert not plain.bucket_exists(s3_env["S3_BUCKET"])  # reading never creates it

    store.put(FRAME, b"x", "image/jpeg")
    assert plain.bucket_exists(s3_env["S3_BUCKET"])
    assert plain.get_object(s3_env["S3_BUCKET"], FRAME).read() == b"x"  # the key exactly as given


def test_an_existing_bucket_is_used_as_it_is(s3_env: dict[str, str], s3_server: S3Server) -> None:
    plain = s3_server.client()
    plain.make_bucket(s3_env["S3_BUCKET"])
    plain.put_object(s3_env["S3_BUCKET"], "earlier/frame.jpg", io.BytesIO(b"old"), 3)

    store = _s3_store(s3_env)
    store.put(FRAME, b"new", "image/jpeg")
    assert store.keys() == [FRAME, "earlier/frame.jpg"]


def test_bucket_removed_under_a_running_store_is_created_again(s3_env: dict[str, str], s3_server: S3Server) -> None:
    store = _s3_store(s3_env)
    store.put(FRAME, b"x", "image/jpeg")
    plain = s3_server.client()
    plain.remove_object(s3_env["S3_BUCKET"], FRAME)
    plain.remove_bucket(s3_env["S3_BUCKET"])

    store.put(FRAME, b"again", "image/jpeg")
    assert store.get(FRAME) == b"again"


def test_object_carries_its_content_type_and_sha256(s3_env: dict[str, str], s3_server: S3Server) -> None:
    store = _s3_store(s3_env)
    item = store.put("2024-05-02/cam-07/a/clip.mp4", b"clip bytes", "video/mp4")

    stat = s3_server.client().stat_object(s3_env["S3_BUCKET"], item.key)
    assert stat.content_type == "video/mp4"
    assert stat.metadata["x-amz-meta-sha256"] == hashlib.sha256(b"clip bytes").hexdigest() == item.sha256


def test_object_without_sha256_metadata_is_hashed_from_its_bytes(s3_env: dict[str, str], s3_server: S3Server) -> None:
    store = _s3_store(s3_env)
    store.put(FRAME, b"x", "image/jpeg")  # creates the bucket
    s3_server.client().put_object(s3_env["S3_BUCKET"], "copied/in.jpg", io.BytesIO(b"by mc cp"), 8)

    assert store.sha256_of("copied/in.jpg") == hashlib.sha256(b"by mc cp").hexdigest()


def test_large_object_is_one_put_not_a_multipart_upload(s3_env: dict[str, str], s3_server: S3Server) -> None:
    data = bytes(range(256)) * (6 * 4096)  # 6 MiB, past minio's 5 MiB multipart threshold
    store = _s3_store(s3_env)
    store.put("2024-05-02/cam-07/a/clip.mp4", data, "video/mp4")

    stat = s3_server.client().stat_object(s3_env["S3_BUCKET"], "2024-05-02/cam-07/a/clip.mp4")
    assert "-" not in stat.etag.strip('"')  # a multipart ETag ends in -<parts>
    assert store.get("2024-05-02/cam-07/a/clip.mp4") == data


def test_presigned_url_fetches_the_bytes_and_carries_the_expiry(s3_env: dict[str, str], s3_server: S3Server) -> None:
    store = _s3_store(s3_env)
    store.put(FRAME, b"jpeg bytes", "image/jpeg")

    url = store.url_for(FRAME, expires_s=120)
    assert url is not None
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}" == s3_server.endpoint
    # moto 5 does not enforce X-Amz-Expires (an expired URL still answers 200), so the expiry
    # is checked as signed into the URL rather than by waiting for a refusal.
    assert query["X-Amz-Expires"] == ["120"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert s3_server.secret_key not in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"jpeg bytes"
        assert response.headers["Content-Type"] == "image/jpeg"
    assert parse_qs(urlsplit(store.url_for(FRAME)).query)["X-Amz-Expires"] == ["900"]


def _assert_unavailable_message(exc: BaseException, server: S3Server, bucket: str, operation: str) -> None:
    message = str(exc)
    assert f"127.0.0.1:{server.port}" in message
    assert bucket in message
    assert operation in message
    chain = [message, repr(exc.__cause__), str(exc.__cause__)]
    assert not any(server.secret_key in text for text in chain)


def test_outage_raises_backend_unavailable_and_the_same_store_recovers(
    s3_env: dict[str, str], s3_server: S3Server
) -> None:
    store = _s3_store(s3_env)
    bucket = s3_env["S3_BUCKET"]
    store.put(FRAME, b"before", "image/jpeg")

    s3_server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as raised:
            store.put("2024-05-02/cam-07/b/frame.jpg", b"during", "image/jpeg")
        _assert_unavailable_message(raised.value, s3_server, bucket, "put")
        with pytest.raises(BackendUnavailable) as raised:
            store.get(FRAME)
        _assert_unavailable_message(raised.value, s3_server, bucket, "get")
        for lookup in (store.exists, store.sha256_of, store.url_for, store.keys):
            with pytest.raises(BackendUnavailable):
                lookup(FRAME)
        assert time.monotonic() - started < 10  # refused connections fail fast: no retry storm
    finally:
        s3_server.start()

    assert store.get(FRAME) == b"before"
    store.put("2024-05-02/cam-07/b/frame.jpg", b"after", "image/jpeg")
    assert store.keys() == [FRAME, "2024-05-02/cam-07/b/frame.jpg"]


def test_store_opens_while_s3_is_down_and_creates_its_bucket_once_it_is_up(
    s3_env: dict[str, str], s3_server: S3Server
) -> None:
    s3_server.stop()
    try:
        store = open_evidence_store(None, s3_env)  # no network at construction
        with pytest.raises(BackendUnavailable) as raised:
            store.put(FRAME, b"x", "image/jpeg")
        _assert_unavailable_message(raised.value, s3_server, s3_env["S3_BUCKET"], "create bucket")
    finally:
        s3_server.start()

    store.put(FRAME, b"x", "image/jpeg")
    assert s3_server.client().bucket_exists(s3_env["S3_BUCKET"])


class _FailingS3(http.server.BaseHTTPRequestHandler):
    """Answers every request with a server error, as an overloaded MinIO or a proxy before a dead one."""

    status = 503
    content_type = "application/xml"
    body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    requests: list[str]

    def _answer(self) -> None:
        self.requests.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self.body)

    do_GET = do_PUT = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(params=["s3_503_xml", "proxy_502_html"])
def failing_endpoint(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[str]]]:
    requests: list[str] = []
    attributes = {"requests": requests}
    if request.param == "proxy_502_html":
        attributes |= {"status": 502, "content_type": "text/html", "body": b"<html>502 Bad Gateway</html>"}
    handler = type("Handler", (_FailingS3,), attributes)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_server_errors_are_backend_unavailable_after_few_retries(failing_endpoint: tuple[str, list[str]]) -> None:
    endpoint, requests = failing_endpoint
    store = S3EvidenceStore(endpoint, "access", "secret-not-shown", "evidence")
    with pytest.raises(BackendUnavailable) as raised:
        store.get(FRAME)

    port = urlsplit(endpoint).port
    assert f"127.0.0.1:{port}" in str(raised.value) and "'evidence'" in str(raised.value)
    assert "secret-not-shown" not in str(raised.value)
    assert len(requests) == 1 + RETRIES  # minio's own client would try 6 times with backoff
    with pytest.raises(BackendUnavailable):
        store.put(FRAME, b"x", "image/jpeg")
    # With the region given no location lookup comes first: a HEAD answered 503 has no body at all.
    with pytest.raises(BackendUnavailable, match="stat"):
        S3EvidenceStore(endpoint, "access", "secret-not-shown", "evidence", region="us-east-1").exists(FRAME)


# --- opening a store from settings ---------------------------------------------------------


@pytest.mark.parametrize("form", ["path", "file_url"])
def test_store_opens_from_a_path_or_file_url(tmp_path: Path, form: str) -> None:
    url = str(tmp_path / "ev") if form == "path" else f"file://{tmp_path}/ev"
    open_evidence_store(url, {}).put("k/frame.jpg", b"x", "image/jpeg")
    assert (tmp_path / "ev/k/frame.jpg").read_bytes() == b"x"


def test_default_store_is_under_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    open_evidence_store(None, {}).put("k/frame.jpg", b"x", "image/jpeg")
    assert (tmp_path / "var/evidence/k/frame.jpg").is_file()


def test_default_store_is_s3_when_an_endpoint_is_set(s3_env: dict[str, str], s3_server: S3Server) -> None:
    store = open_evidence_store(None, s3_env)
    store.put("k/frame.jpg", b"x", "image/jpeg")

    assert isinstance(store, S3EvidenceStore) and store.bucket == s3_env["S3_BUCKET"]
    assert s3_server.client().get_object(s3_env["S3_BUCKET"], "k/frame.jpg").read() == b"x"
    without_bucket = {name: value for name, value in s3_env.items() if name != "S3_BUCKET"}
    assert open_evidence_store(None, without_bucket).bucket == "patrol-evidence"


def test_s3_url_opens_that_bucket_with_settings_from_the_environment(
    s3_env: dict[str, str], s3_server: S3Server
) -> None:
    store = open_evidence_store("s3://case-evidence-bucket", {**s3_env, "S3_REGION": "us-east-1"})
    assert isinstance(store, S3EvidenceStore) and store.bucket == "case-evidence-bucket"
    store.put("k/frame.jpg", b"x", "image/jpeg")
    assert store.get("k/frame.jpg") == b"x"


@pytest.mark.parametrize("missing", ["S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY"])
@pytest.mark.parametrize("url", [None, "s3://evidence-bucket"])
def test_missing_s3_setting_is_named(missing: str, url: str | None) -> None:
    environ = {
        "S3_ENDPOINT": "http://127.0.0.1:9",
        "S3_ACCESS_KEY": "access",
        "S3_SECRET_KEY": "top-secret-value",
        "S3_BUCKET": "evidence-bucket",
    }
    del environ[missing]
    if url is None and missing == "S3_ENDPOINT":
        assert isinstance(open_evidence_store(None, environ), LocalEvidenceStore)  # no endpoint: local
        return
    with pytest.raises(ValueError, match=missing) as raised:
        open_evidence_store(url, environ)
    assert "top-secret-value" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "endpoint", "match"),
    [
        ("s3://user:top-secret-value@evidence-bucket", "http://127.0.0.1:9", "credentials"),
        ("s3://evidence-bucket/cases", "http://127.0.0.1:9", "no path"),
        ("s3://", "http://127.0.0.1:9", "names its bucket"),
        ("s3://evidence-bucket", "http://user:top-secret-value@127.0.0.1:9", "credentials"),
        ("s3://evidence-bucket", "127.0.0.1:9000", "http"),
        ("s3://evidence-bucket", "ftp://127.0.0.1:9000", "http"),
        ("s3://evidence-bucket", "http://127.0.0.1:9000/minio?top-secret-value", "no path"),
    ],
)
def test_unusable_s3_settings_are_refused_without_echoing_them(url: str, endpoint: str, match: str) -> None:
    environ = {"S3_ENDPOINT": endpoint, "S3_ACCESS_KEY": "access", "S3_SECRET_KEY": "top-secret-value"}
    with pytest.raises(ValueError, match=match) as raised:
        open_evidence_store(url, environ)
    assert "top-secret-value" not in str(raised.value)


def test_invalid_bucket_name_is_refused_at_opening() -> None:
    environ = {"S3_ENDPOINT": "http://127.0.0.1:9", "S3_ACCESS_KEY": "access", "S3_SECRET_KEY": "secret"}
    with pytest.raises(ValueError, match="Evidence_Bucket"):
        open_evidence_store("s3://Evidence_Bucket", environ)


@pytest.mark.parametrize("url", ["ftp://host/evidence", "file://host/evidence"])
def test_unusable_store_url_is_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="file:///"):
        open_evidence_store(url, {})
