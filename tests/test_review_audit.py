"""The audit trail and `patrol verify`; the review CLI verbs (users, dataset export)."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import sqlite3
import stat
import zipfile
from dataclasses import replace

import cv2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from review_support import login, running_app

from pipeline.cli.main import main
from pipeline.cli.review_verbs import _cli_actor
from pipeline.review.audit import GENESIS_SHA256, canonical_json, first_broken_link, seal
from pipeline.review.dataset import CLASSES
from pipeline.review.db import ReviewDatabase
from pipeline.review.store import ReviewStore
from pipeline.synth.actors import CLASSES as DETECTOR_CLASSES


@pytest.fixture
def reviewed(street_var):
    """A review store with decisions in it: confirmed, rejected twice, escalated, one bundle exported."""
    with running_app(street_var) as client:
        officer = login(client, "officer1")
        cases = client.get("/api/cases", headers=officer, params={"per_page": 100}).json()["items"]
        by_kind = {}
        for case in cases:
            by_kind.setdefault(case["violation"], []).append(case["case_id"])
        parking = by_kind["illegal_parking"]
        client.post(f"/api/cases/{parking[0]}/confirm", headers=officer, json={})
        client.post(f"/api/cases/{parking[1]}/reject", headers=officer, json={"reason": "detector_error"})
        client.post(f"/api/cases/{by_kind['stall_encroachment'][0]}/reject", headers=officer,
                    json={"reason": "authorised", "note": "早市摊位已审批"})
        client.post(f"/api/cases/{by_kind['camera_fault'][0]}/escalate", headers=officer, json={})
        client.get(f"/api/cases/{parking[0]}/bundle", headers=officer)
    return street_var, {"confirmed": parking[0], "false_detection": parking[1],
                        "authorised": by_kind["stall_encroachment"][0]}


def verify(var, capsys, *extra) -> tuple[int, str]:
    code = main(["verify", "--db", str(var / "review" / "review.sqlite3"), "--evidence", str(var / "evidence"), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def db(var) -> sqlite3.Connection:
    return sqlite3.connect(var / "review" / "review.sqlite3", isolation_level=None)


def test_intact_chain_and_evidence_pass(reviewed, capsys):
    var, _ = reviewed
    code, output = verify(var, capsys)
    assert code == 0, output
    store = ReviewStore(var / "review" / "review.sqlite3")
    entries = store.audit.entries()
    store.close()
    assert entries[0].prev_sha256 == GENESIS_SHA256
    assert all(later.prev_sha256 == earlier.sha256 for earlier, later in itertools.pairwise(entries))
    assert [entry.seq for entry in entries] == list(range(1, len(entries) + 1))
    assert f"{len(entries)} entries intact (head sha256 {entries[-1].sha256})" in output


def test_a_changed_evidence_file_is_named(reviewed, capsys):
    var, cases = reviewed
    store = ReviewStore(var / "review" / "review.sqlite3")
    key = store.cases.get(cases["confirmed"]).record.evidence["crop.jpg"].key
    store.close()
    path = var / "evidence" / key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    path.write_bytes(bytes(data))
    code, output = verify(var, capsys, "--case", cases["confirmed"])
    assert code == 1
    assert f"first broken: evidence {key}: sha256 is" in output
    code, output = verify(var, capsys, "--case", cases["false_detection"])
    assert code == 0, output  # another case's evidence is untouched


def test_a_deleted_evidence_file_is_named(reviewed, capsys):
    var, cases = reviewed
    store = ReviewStore(var / "review" / "review.sqlite3")
    key = store.cases.get(cases["authorised"]).record.evidence["clip.mp4"].key
    store.close()
    (var / "evidence" / key).unlink()
    code, output = verify(var, capsys)
    assert code == 1 and f"evidence {key}: missing from the evidence store" in output


def test_rewritten_metadata_is_named_even_with_a_matching_record(reviewed, capsys):
    """Someone swaps a picture, fixes metadata.json and the record's sha256s: the sealed record hash catches it."""
    var, cases = reviewed
    case_id = cases["confirmed"]
    conn = db(var)
    record = json.loads(conn.execute("SELECT record FROM cases WHERE case_id = ?", (case_id,)).fetchone()[0])
    record["evidence"]["frame.jpg"]["sha256"] = "f" * 64
    conn.execute("UPDATE cases SET record = ? WHERE case_id = ?", (json.dumps(record), case_id))
    conn.close()
    code, output = verify(var, capsys, "--case", case_id)
    assert code == 1
    assert f"first broken: case {case_id}: its record was changed after it was received" in output


def test_a_changed_audit_entry_is_named_by_seq(reviewed, capsys):
    var, cases = reviewed
    conn = db(var)
    seq = conn.execute("SELECT seq FROM audit WHERE action = 'reject' AND case_id = ?",
                       (cases["false_detection"],)).fetchone()[0]
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit SET actor = 'officer2' WHERE seq = ?", (seq,))
    # Someone with the file drops the guard and rewrites who decided.
    conn.execute("DROP TRIGGER audit_is_append_only_update")
    conn.execute("UPDATE audit SET actor = 'officer2' WHERE seq = ?", (seq,))
    conn.close()
    code, output = verify(var, capsys)
    assert code == 1
    assert f"first broken: audit seq {seq} (reject by officer2, case {cases['false_detection']}): content changed" in output


def test_a_deleted_audit_entry_is_named_by_seq(reviewed, capsys):
    var, _ = reviewed
    conn = db(var)
    seq = conn.execute("SELECT seq FROM audit WHERE action = 'confirm'").fetchone()[0]
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit WHERE seq = ?", (seq,))
    conn.execute("DROP TRIGGER audit_is_append_only_delete")
    conn.execute("DELETE FROM audit WHERE seq = ?", (seq,))
    conn.close()
    code, output = verify(var, capsys)
    assert code == 1 and f"first broken: audit seq {seq}: missing" in output


def test_a_decision_changed_behind_the_trail_is_named(reviewed, capsys):
    var, cases = reviewed
    conn = db(var)
    conn.execute("UPDATE cases SET status = 'confirmed', reject_reason = NULL WHERE case_id = ?",
                 (cases["false_detection"],))
    conn.close()
    code, output = verify(var, capsys)
    assert code == 1
    assert f"case {cases['false_detection']}: review state" in output and "differs from what audit seq" in output


def test_a_case_removed_from_the_store_is_named(reviewed, capsys):
    var, cases = reviewed
    conn = db(var)
    conn.execute("DELETE FROM cases WHERE case_id = ?", (cases["authorised"],))
    conn.close()
    code, output = verify(var, capsys)
    assert code == 1 and f"case {cases['authorised']}: received (audit seq" in output


def test_a_change_without_its_audit_entry_is_rolled_back(tmp_path):
    database = ReviewDatabase(tmp_path / "review.sqlite3")
    try:
        with pytest.raises(RuntimeError, match="without recording its audit entry"):
            with database.change("mallory", "user_add") as change:
                change.conn.execute("INSERT INTO users (name, role, password_hash, created_at)"
                                    " VALUES ('ghost', 'admin', 'x', 'now')")
        with database.reading() as conn:
            assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0
            assert conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 0
    finally:
        database.close()


def test_first_broken_link_reports_the_earliest_of_two_breaks(reviewed):
    var, _ = reviewed
    store = ReviewStore(var / "review" / "review.sqlite3")
    entries = store.audit.entries()
    store.close()
    tampered = list(entries)
    tampered[2] = replace(tampered[2], detail={"forged": True})
    tampered[5] = replace(tampered[5], actor="mallory")
    check = first_broken_link(tampered)
    assert check.broken_seq == entries[2].seq and not check.intact
    assert first_broken_link(entries).intact


def test_verify_of_an_unknown_case_is_a_usage_error(reviewed, capsys):
    var, _ = reviewed
    code, output = verify(var, capsys, "--case", "P-nope")
    assert code == 2 and "--case P-nope" in output


def test_users_add_hashes_the_password_and_refuses_a_second_of_a_name(tmp_path, capsys):
    password_file = tmp_path / "password"
    password_file.write_text("a-long-enough-password\n")
    database = tmp_path / "review.sqlite3"
    argv = ["users", "add", "wang.wu", "--role", "officer", "--password-file", str(password_file), "--db", str(database)]
    assert main(argv) == 0
    assert main(argv) == 2
    assert "exists already" in capsys.readouterr().err
    store = ReviewStore(database)
    user, stored = store.accounts.password_hash("wang.wu")
    entry = store.audit.entries()[-1]
    store.close()
    assert user.role.value == "officer" and stored.startswith("$argon2id$")
    assert entry.action == "user_add" and entry.after == {"name": "wang.wu", "role": "officer"}
    password_file.write_text("short\n")
    assert main(["users", "add", "li.si", "--role", "admin", "--password-file", str(password_file),
                 "--db", str(database)]) == 2


def test_users_verbs_disable_enable_set_role_reset_and_revoke_with_audit(tmp_path, capsys):
    password_file = tmp_path / "password"
    password_file.write_text("a-long-enough-password\n")
    database = tmp_path / "review.sqlite3"

    def users(*argv: str) -> tuple[int, str]:
        code = main(["users", *argv, "--db", str(database)])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    for name, role in (("boss", "admin"), ("wang.wu", "officer")):
        assert users("add", name, "--role", role, "--password-file", str(password_file))[0] == 0
    store = ReviewStore(database)
    wang = next(user for user in store.accounts.users() if user.name == "wang.wu")
    token, _ = store.accounts.create_session(wang, 3600)

    code, output = users("disable", "wang.wu")
    assert code == 0 and output == "users: disabled wang.wu: it cannot log in, and its sessions have ended\n"
    assert store.accounts.session(token, 3600) is None
    code, output = users("disable", "boss")
    assert code == 2 and "last active admin" in output
    assert users("list") == (0, "boss\tadmin\tactive\nwang.wu\tofficer\tdisabled\n")
    assert users("enable", "wang.wu")[0] == 0
    assert users("set-role", "wang.wu", "--role", "supervisor") == (0, "users: wang.wu is now supervisor\n")
    assert users("reset-password", "wang.wu", "--password-file", str(password_file))[0] == 0
    assert users("list")[1].splitlines()[1] == "wang.wu\tsupervisor\tmust-change-password"
    store.accounts.create_session(wang, 3600)
    assert users("revoke-sessions", "wang.wu") == (0, "users: ended 1 session(s) of wang.wu\n")
    code, output = users("revoke-sessions", "nobody")
    assert code == 2 and "no user nobody" in output

    entries = store.audit.entries()
    store.close()
    changes = [(entry.action, entry.before, entry.after, entry.detail) for entry in entries
               if entry.action not in ("user_add", "login")]
    assert changes == [
        ("user_disable", {"name": "wang.wu", "active": True}, {"name": "wang.wu", "active": False},
         {"sessions_ended": 1}),
        ("user_enable", {"name": "wang.wu", "active": False}, {"name": "wang.wu", "active": True},
         {"sessions_ended": 0}),
        ("role_change", {"name": "wang.wu", "role": "officer"}, {"name": "wang.wu", "role": "supervisor"}, {}),
        ("password_reset", None, None, {"name": "wang.wu", "must_change_password": True, "sessions_ended": 0}),
        ("sessions_revoke", None, None, {"name": "wang.wu", "sessions_ended": 1}),
    ]
    assert {entry.actor for entry in entries if entry.action != "login"} == {_cli_actor()}


def test_an_older_store_gains_the_account_columns_and_its_sessions_end(tmp_path):
    path = tmp_path / "review.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)  # the tables as the first release made them
    conn.executescript("""
        CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
                            created_at TEXT NOT NULL);
        CREATE TABLE sessions (token_sha256 TEXT PRIMARY KEY, user_name TEXT NOT NULL REFERENCES users (name),
                               csrf_token TEXT NOT NULL, expires_at REAL NOT NULL);
        INSERT INTO users VALUES ('wang.wu', 'officer', 'x', 'now');""")
    conn.execute("INSERT INTO sessions VALUES (?, 'wang.wu', 'c', 9e9)", (hashlib.sha256(b"token").hexdigest(),))
    conn.close()
    store = ReviewStore(path)
    try:
        [user] = store.accounts.users()
        assert user.active and not user.must_change_password
        assert store.accounts.session("token", 1800) is None  # its last request is unknown: it counts as idle
        assert store.accounts.set_active("wang.wu", False, actor="test").active is False
    finally:
        store.close()
    ReviewStore(path).close()  # opening it again adds nothing twice


def test_dataset_export_writes_positives_and_hard_negatives(reviewed, capsys):
    var, cases = reviewed
    out = var / "annotations" / "reviewed"
    code = main(["dataset", "export", "--since", "2000-01-01", "--out", str(out),
                 "--db", str(var / "review" / "review.sqlite3"), "--evidence", str(var / "evidence")])
    assert code == 0
    assert "1 positives, 1 hard negatives" in capsys.readouterr().out
    assert CLASSES == DETECTOR_CLASSES  # the labels use the detector's class map
    positive = (out / "labels" / f"{cases['confirmed']}.txt").read_text().split()
    assert int(positive[0]) == CLASSES.index("vehicle")
    centre_x, centre_y, width, height = map(float, positive[1:])
    assert 0 < width <= 1 and 0 < height <= 1 and 0 < centre_x < 1 and 0 < centre_y < 1
    # The crop keeps context around the box, so the box fills a clear part of it, not all.
    assert 0.3 < width < 0.9 and 0.3 < height < 0.9
    image = cv2.imread(str(out / "images" / f"{cases['confirmed']}.jpg"))
    assert image is not None and image.shape[0] > 20
    assert (out / "labels" / f"{cases['false_detection']}.txt").read_text() == ""  # hard negative
    assert not (out / "labels" / f"{cases['authorised']}.txt").exists()  # the detector was right
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {(row["case_id"], row["kind"]) for row in manifest} == {
        (cases["confirmed"], "positive"), (cases["false_detection"], "hard_negative")}
    assert "names" in (out / "data.yaml").read_text()
    code = main(["dataset", "export", "--since", "2999-01-01", "--out", str(out),
                 "--db", str(var / "review" / "review.sqlite3"), "--evidence", str(var / "evidence")])
    assert code == 0 and "0 positives, 0 hard negatives" in capsys.readouterr().out
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 2  # kept, not repeated
    store = ReviewStore(var / "review" / "review.sqlite3")
    exports = [entry for entry in store.audit.entries() if entry.action == "dataset_export"]
    store.close()
    assert len(exports) == 2 and exports[0].detail["positives"] == [cases["confirmed"]]


def test_verify_of_a_store_that_is_not_there_is_an_error_not_an_empty_success(tmp_path) -> None:
    import subprocess
    import sys

    from conftest import REPO

    missing = tmp_path / "typo" / "review.sqlite3"
    run = subprocess.run([sys.executable, "-m", "pipeline.cli.main", "verify", "--db", str(missing)],
                         capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert run.returncode == 2
    assert "no review store there" in run.stderr and "Traceback" not in run.stderr
    assert not missing.parent.exists()


# -- signed heads (the chain's head signed with Ed25519, kept outside the database) ----------------


def _last_entry_seq(var) -> int:
    conn = db(var)
    try:
        return conn.execute("SELECT MAX(seq) FROM audit").fetchone()[0]
    finally:
        conn.close()


def test_an_untouched_chain_matches_its_signed_heads_and_the_key_stays_out_of_the_database(reviewed, capsys):
    var, _ = reviewed
    key, heads = var / "review" / "audit-signing.key", var / "review" / "audit-heads.jsonl"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    secret = key.read_bytes().splitlines()[1]
    assert not [path for path in (var / "review").glob("review.sqlite3*") if secret in path.read_bytes()]
    conn = db(var)
    try:
        seq, sha256 = conn.execute("SELECT seq, sha256 FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    assert json.loads(heads.read_text().splitlines()[-1])["seq"] == seq  # every append signs its head
    code, output = verify(var, capsys, "--expect-head", f"{seq}:{sha256}")
    assert code == 0, output
    assert f"signed head(s) up to seq {seq} match it, as do the 1 expected head(s)" in output


def test_a_deleted_last_entry_is_named_as_truncation(reviewed, capsys):
    var, _ = reviewed
    seq = _last_entry_seq(var)
    conn = db(var)
    conn.execute("DROP TRIGGER audit_is_append_only_delete")
    conn.execute("DELETE FROM audit WHERE seq = ?", (seq,))
    conn.close()
    code, output = verify(var, capsys)
    assert code == 1
    assert f"first broken: audit chain truncated: seq {seq} (sha256" in output
    assert f"the chain, which ends at seq {seq - 1}" in output


def test_a_rewritten_and_resealed_decision_is_named_by_its_signed_head(reviewed, capsys):
    """Someone with the file makes officer2 the one who rejected, in the entry and the case, and
    re-seals every later entry: the chain recomputes, but no longer to the heads signed before."""
    var, cases = reviewed
    store = ReviewStore(var / "review" / "review.sqlite3")
    entries = store.audit.entries()
    store.close()
    target = next(entry for entry in entries if entry.action == "reject" and entry.case_id == cases["false_detection"])
    conn = db(var)
    conn.execute("DROP TRIGGER audit_is_append_only_update")
    prev_sha256 = entries[target.seq - 2].sha256
    for entry in entries[target.seq - 1:]:
        fields = {name: value for name, value in entry.to_dict().items() if name != "sha256"}
        if entry is target:
            fields.update(actor="officer2", after={**entry.after, "decided_by": "officer2"})
        resealed = seal(**{**fields, "prev_sha256": prev_sha256})
        conn.execute("UPDATE audit SET actor = ?, after = ?, prev_sha256 = ?, sha256 = ? WHERE seq = ?",
                     (resealed.actor, canonical_json(resealed.after).decode() if resealed.after else None,
                      resealed.prev_sha256, resealed.sha256, resealed.seq))
        prev_sha256 = resealed.sha256
    conn.execute("UPDATE cases SET decided_by = 'officer2' WHERE case_id = ?", (cases["false_detection"],))
    conn.close()
    store = ReviewStore(var / "review" / "review.sqlite3")
    assert first_broken_link(store.audit.entries()).intact  # the chain alone cannot tell
    store.close()
    code, output = verify(var, capsys)
    assert code == 1
    assert f"first broken: audit seq {target.seq}: sha256" in output
    assert "does not match its signed head" in output and "re-sealed" in output


def test_a_head_noted_down_that_the_chain_no_longer_holds_fails(reviewed, capsys):
    var, _ = reviewed
    seq = _last_entry_seq(var)
    code, output = verify(var, capsys, "--expect-head", f"{seq}:{'ab' * 32}")
    assert code == 1 and f"expected head seq {seq}: the chain holds sha256" in output
    code, output = verify(var, capsys, "--expect-head", f"{seq + 5}:{'ab' * 32}")
    assert code == 1 and f"expected head seq {seq + 5} (sha256 abababab" in output and "truncated" in output
    with pytest.raises(SystemExit) as usage_error:
        verify(var, capsys, "--expect-head", "12:not-a-hash")
    assert usage_error.value.code == 2 and "SEQ:SHA256" in capsys.readouterr().err


def test_a_bundles_public_key_checks_the_signed_heads_and_its_own_head(reviewed, capsys, tmp_path):
    """What a third party holds: the bundle's signed head and public key."""
    var, cases = reviewed
    with running_app(var) as client:
        response = client.get(f"/api/cases/{cases['confirmed']}/bundle", headers=login(client, "chief"))
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    public_pem = archive.read(f"{cases['confirmed']}/audit-public-key.pem")
    signed = json.loads(archive.read(f"{cases['confirmed']}/signed_head.json"))
    last_entry = json.loads(archive.read(f"{cases['confirmed']}/audit.jsonl").splitlines()[-1])
    assert [signed[k] for k in ("seq", "sha256", "at")] == [last_entry[k] for k in ("seq", "sha256", "at")]
    assert signed["signed_payload"] == canonical_json({k: signed[k] for k in ("at", "seq", "sha256")}).decode()
    public_key = serialization.load_pem_public_key(public_pem)
    public_key.verify(base64.b64decode(signed["signature"]), signed["signed_payload"].encode())  # raises if forged
    (tmp_path / "public.pem").write_bytes(public_pem)
    code, output = verify(var, capsys, "--audit-key", str(tmp_path / "public.pem"),
                          "--signed-heads", str(var / "review" / "audit-heads.jsonl"),
                          "--expect-head", f"{signed['seq']}:{signed['sha256']}")
    assert code == 0, output
    (tmp_path / "other.pem").write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    code, output = verify(var, capsys, "--audit-key", str(tmp_path / "other.pem"),
                          "--signed-heads", str(var / "review" / "audit-heads.jsonl"))
    assert code == 1 and "not a head signed by the key" in output


def test_reads_go_through_while_a_write_waits_on_another_process(tmp_path, monkeypatch) -> None:
    import threading
    import time

    from pipeline.review import db as review_db

    monkeypatch.setattr(review_db, "BUSY_TIMEOUT_S", 5.0)  # the write's wait; reads once waited it out too
    path = tmp_path / "review.sqlite3"
    database = ReviewDatabase(path)
    other = sqlite3.connect(path, isolation_level=None)  # as `patrol users add` in another process would
    other.execute("BEGIN IMMEDIATE")

    def add_user() -> None:
        with database.unaudited_write() as conn:
            conn.execute("INSERT INTO users (name, role, password_hash, created_at)"
                         " VALUES ('u', 'officer', 'x', 'now')")

    writer = threading.Thread(target=add_user)  # the intake or a decision, waiting for the lock
    try:
        writer.start()
        time.sleep(0.3)  # the write is waiting on the lock by now
        started = time.monotonic()
        with database.reading() as conn:
            assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0
        assert time.monotonic() - started < 2
    finally:
        other.execute("ROLLBACK")
        other.close()
    writer.join(10)
    with database.reading() as conn:  # the reads' own connection sees the write once committed
        assert conn.execute("SELECT name FROM users").fetchall() == [("u",)]
    database.close()


def test_verify_of_a_store_damaged_past_its_schema_names_the_file(tmp_path, capsys) -> None:
    path = tmp_path / "review.sqlite3"
    ReviewDatabase(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executemany("INSERT INTO audit (at, actor, action, detail, prev_sha256, sha256)"
                     " VALUES ('t', 'a', 'x', '{}', ?, ?)", [("0" * 64, "1" * 64)] * 3000)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    pages = len(data) // 4096
    data[pages // 4 * 4096: pages * 3 // 4 * 4096] = b"\xff" * ((pages * 3 // 4 - pages // 4) * 4096)
    path.write_bytes(data)  # the schema reads fine; the audit trail's pages do not

    code = main(["verify", "--db", str(path), "--evidence", str(tmp_path / "evidence")])

    assert code == 2
    assert capsys.readouterr().err == f"patrol verify: {path}: database disk image is malformed\n"
