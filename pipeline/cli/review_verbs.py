"""The review-side verbs: `patrol serve`, `patrol users`, `patrol verify`, `patrol dataset export`."""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.cli.errors import UsageError
from pipeline.config.workspace import DEFAULT_WORKSPACE

if TYPE_CHECKING:  # the verbs import the review modules only when they run
    from pipeline.review.accounts import AccountRepository, User

DEFAULT_DB = str(DEFAULT_WORKSPACE.review_db)
DEFAULT_QUEUE = DEFAULT_WORKSPACE.queue_url  # what `patrol demo` writes
PASSWORD_ENV = "PATROL_PASSWORD"
MAP_TILES_ENV = "PATROL_MAP_TILES"
MAP_ATTRIBUTION_ENV = "PATROL_MAP_ATTRIBUTION"
MAX_CLAIM_MINUTES = 8 * 60.0  # ReviewSettings.claim_s's bound


def _cli_actor() -> str:
    """Audit entries made from a shell name the account that ran the command."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _store(args, *, must_exist: bool = False):
    """The review store at ``--db``; checking or exporting one that is not there is an error, not
    an empty success (a mistyped path would otherwise verify an empty, new store)."""
    from pipeline.review.store import ReviewStore

    if must_exist and not Path(args.db).is_file():
        raise UsageError(f"--db {args.db}: no review store there (`patrol serve` or `patrol users add` creates one)")
    try:
        return ReviewStore(args.db)
    except Exception as exc:  # sqlite3.Error or OSError: a path that is no database
        raise UsageError(f"--db {args.db}: cannot open the review store: {exc}") from exc


def _evidence(args):
    from pipeline.evidence import open_evidence_store

    try:
        return open_evidence_store(args.evidence)
    except (ValueError, OSError) as exc:
        raise UsageError(f"--evidence: {exc}") from exc


def cmd_serve(args) -> int:
    import uvicorn
    from pydantic import ValidationError

    from pipeline.review.app import create_app
    from pipeline.review.settings import ReviewSettings
    from pipeline.review.workflow import WorkflowConfigError

    streams = args.streams
    if streams is None and Path("streams").is_dir():
        streams = "streams"
    try:
        settings = ReviewSettings(db_path=args.db, queue_url=args.queue or os.environ.get("REDIS_URL") or DEFAULT_QUEUE,
                                  audit_key=args.audit_key, signed_heads=args.signed_heads,
                                  evidence_url=args.evidence, streams_dir=streams,
                                  metrics_urls=tuple(args.metrics_url), secure_cookies=args.secure_cookies,
                                  display_timezone=args.timezone, workflow_config=args.workflow,
                                  map_tiles=args.map_tiles or None, map_attribution=args.map_attribution or None,
                                  **({} if args.claim_minutes is None else {"claim_s": args.claim_minutes * 60}))
    except ValidationError as exc:
        raise UsageError("; ".join(f"--{'-'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from exc
    try:
        app = create_app(settings)
    except WorkflowConfigError as exc:
        raise UsageError(f"--workflow: {exc}") from exc
    except ValueError as exc:
        raise UsageError(f"--queue/--evidence/--audit-key: {exc}") from exc
    except OSError as exc:
        raise UsageError(f"--audit-key/--signed-heads: {exc}") from exc
    if not app.state.review.store.accounts.users():
        print("serve: no users yet; add one with `patrol users add NAME --role supervisor`", flush=True)
    print(f"serve: review page on http://{args.host}:{args.port}/ (API schema at /openapi.json for a supervisor "
          "or admin); Ctrl-C stops", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower())
    except SystemExit as exc:  # uvicorn's way of saying it could not bind
        raise UsageError(f"--host/--port: cannot listen on {args.host}:{args.port}") from exc
    return 0


def _read_password(args) -> str:
    if args.password_file:
        try:
            return Path(args.password_file).read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError, UnicodeDecodeError) as exc:
            raise UsageError(f"--password-file {args.password_file}: cannot read a first line: {exc}") from exc
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise UsageError(f"no password: give --password-file, set {PASSWORD_ENV}, or run in a terminal")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UsageError("the two passwords differ")
    return first


def cmd_users_add(args) -> int:
    from pipeline.review.auth import hash_password
    from pipeline.review.errors import Conflict, Invalid
    from pipeline.review.vocabulary import AccountRole

    password = _read_password(args)
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise UsageError(f"password: {exc}") from exc
    store = _store(args)
    try:
        user = store.accounts.add_user(args.name, AccountRole(args.role), password_hash, actor=_cli_actor(),
                                       display_name=args.display_name, badge_number=args.badge)
    except (Conflict, Invalid) as exc:
        raise UsageError(f"users add {args.name}: {exc}") from exc
    finally:
        store.close()
    print(f"users: added {user.name} ({user.role.value}{_profile_words(user)})")
    return 0


def _profile_words(user: User) -> str:
    """", 姓名 王小明, 执法证号 37-0001" of what the account has."""
    return "".join(f", {label} {value}" for label, value in (("姓名", user.display_name),
                                                              ("执法证号", user.badge_number)) if value)


def cmd_users_list(args) -> int:
    store = _store(args, must_exist=True)
    try:
        for user in store.accounts.users():
            state = "disabled" if not user.active else "must-change-password" if user.must_change_password else "active"
            profile = (f"\t{user.display_name or ''}\t{user.badge_number or ''}"
                       if user.display_name or user.badge_number else "")
            print(f"{user.name}\t{user.role.value}\t{state}{profile}")
    finally:
        store.close()
    return 0


def _change_account(args, change: Callable[[AccountRepository, str], str]) -> int:
    """``change(accounts, actor)`` on the store at --db, printing the line it returns; what the store
    refuses (no such user, the last active admin) is a usage error."""
    from pipeline.review.errors import ReviewError

    store = _store(args, must_exist=True)
    try:
        line = change(store.accounts, _cli_actor())
    except ReviewError as exc:
        raise UsageError(f"users {args.users_verb} {args.name}: {exc}") from exc
    finally:
        store.close()
    print(f"users: {line}")
    return 0


def cmd_users_disable(args) -> int:
    def disable(accounts: AccountRepository, actor: str) -> str:
        accounts.set_active(args.name, False, actor=actor)
        return f"disabled {args.name}: it cannot log in, and its sessions have ended"
    return _change_account(args, disable)


def cmd_users_enable(args) -> int:
    def enable(accounts: AccountRepository, actor: str) -> str:
        accounts.set_active(args.name, True, actor=actor)
        return f"enabled {args.name}"
    return _change_account(args, enable)


def cmd_users_set_role(args) -> int:
    from pipeline.review.vocabulary import AccountRole

    def set_role(accounts: AccountRepository, actor: str) -> str:
        accounts.set_role(args.name, AccountRole(args.role), actor=actor)
        return f"{args.name} is now {args.role}"
    return _change_account(args, set_role)


def cmd_users_reset_password(args) -> int:
    from pipeline.review.auth import hash_password

    try:
        password_hash = hash_password(_read_password(args))
    except ValueError as exc:
        raise UsageError(f"password: {exc}") from exc

    def reset(accounts: AccountRepository, actor: str) -> str:
        accounts.set_password(args.name, password_hash, actor=actor, must_change=args.must_change)
        then = "; it must be changed at the next login" if args.must_change else ""
        return f"reset the password of {args.name}, whose sessions have ended{then}"
    return _change_account(args, reset)


def cmd_users_set_profile(args) -> int:
    def set_profile(accounts: AccountRepository, actor: str) -> str:
        user = accounts.set_profile(args.name, args.display_name, args.badge, actor=actor)
        return f"{args.name}:{_profile_words(user).lstrip(',') or ' no display name or badge number'}"
    return _change_account(args, set_profile)


def cmd_users_revoke_sessions(args) -> int:
    def revoke(accounts: AccountRepository, actor: str) -> str:
        return f"ended {accounts.revoke_sessions(args.name, actor=actor)} session(s) of {args.name}"
    return _change_account(args, revoke)


def cmd_verify(args) -> int:
    from pipeline.review.errors import NotFound
    from pipeline.review.signed_heads import anchor_paths
    from pipeline.review.verify import verify
    from pipeline.types import BackendUnavailable

    key_path, heads_path = anchor_paths(Path(args.db), _path_or_none(args.audit_key), _path_or_none(args.signed_heads))
    store = _store(args, must_exist=True)
    try:
        report = verify(store, _evidence(args), args.case, key_path=key_path, heads_path=heads_path,
                        expected_heads=args.expect_head)
    except NotFound as exc:
        raise UsageError(f"--case {args.case}: {exc}") from exc
    except BackendUnavailable as exc:
        raise UsageError(f"--evidence: {exc}") from exc
    finally:
        store.close()
    chain, latest = report.chain, report.heads.latest
    if report.ok:
        signed = (f"{report.heads.signed} signed head(s) up to seq {latest.seq} match it" if latest
                  else "no signed heads yet")
        expected = f", as do the {len(args.expect_head)} expected head(s)" if args.expect_head else ""
        print(f"verify: OK — audit chain of {chain.entries} entries intact (head sha256 {chain.head_sha256}); "
              f"{signed}{expected}; evidence of {report.cases_checked} case(s) matches its sha256s")
        return 0
    print(f"verify: FAILED — first broken: {report.problems[0]}", file=sys.stderr)
    for problem in report.problems[1:]:
        print(f"  also: {problem}", file=sys.stderr)
    return 1


def cmd_dataset_export(args) -> int:
    from pipeline.review.dataset import export_reviewed
    from pipeline.review.local_time import read_local

    try:
        since = read_local(datetime.fromisoformat(args.since), args.timezone)
    except (ValueError, OverflowError) as exc:
        raise UsageError(f"--since {args.since}: not an ISO 8601 date or time") from exc
    store = _store(args, must_exist=True)
    try:
        result = export_reviewed(store, _evidence(args), Path(args.out), since=since, actor=_cli_actor())
    finally:
        store.close()
    print(result.line())
    for case_id, why in result.skipped.items():
        print(f"  skipped {case_id}: {why}")
    return 0


def _path_or_none(text: str | None) -> Path | None:
    return Path(text) if text else None


def _expected_head(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not (seq.isdigit() and re.fullmatch(r"[0-9a-fA-F]{64}", digest)):
        raise argparse.ArgumentTypeError(f"{text} is not SEQ:SHA256 (an audit seq, a colon, 64 hex digits)")
    return int(seq), digest.lower()


def _timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{name} is not an IANA time zone such as Asia/Shanghai") from exc


def _claim_minutes(text: str) -> float:
    try:
        minutes = float(text)
    except ValueError:
        minutes = float("nan")
    if not 0 < minutes <= MAX_CLAIM_MINUTES:  # also NaN
        raise argparse.ArgumentTypeError(f"{text} is not a number of minutes above 0 and at most {MAX_CLAIM_MINUTES:g}")
    return minutes


def add_review_verbs(verbs: argparse._SubParsersAction) -> None:
    """Adds the review service's verbs to the `patrol` parser."""
    from pipeline.review.claims import DEFAULT_CLAIM_S
    from pipeline.review.local_time import DEFAULT_DISPLAY_TIMEZONE
    from pipeline.review.vocabulary import AccountRole

    def db_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--db", default=DEFAULT_DB, help=f"review store (SQLite; default {DEFAULT_DB})")

    def timezone_option(parser: argparse.ArgumentParser, use: str) -> None:
        parser.add_argument("--timezone", type=_timezone, default=ZoneInfo(DEFAULT_DISPLAY_TIMEZONE),
                            help=f"the district's IANA time zone, {use} (default {DEFAULT_DISPLAY_TIMEZONE})")

    def signing_options(parser: argparse.ArgumentParser, key_use: str) -> None:
        from pipeline.review.signed_heads import HEADS_ENV, HEADS_NAME, KEY_ENV, KEY_NAME

        parser.add_argument("--audit-key", default=os.environ.get(KEY_ENV),
                            help=f"Ed25519 key file {key_use} (default: ${KEY_ENV}, else {KEY_NAME} beside --db)")
        parser.add_argument("--signed-heads", default=os.environ.get(HEADS_ENV),
                            help=f"the signed heads file (default: ${HEADS_ENV}, else {HEADS_NAME} beside the key)")

    def evidence_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--evidence", help="evidence store: a path, file:///path or s3://bucket "
                            "(default: S3_* environment, else var/evidence)")

    def profile_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--display-name", help="the officer's name as pages and dossiers show it (姓名), "
                            "e.g. 王小明")
        parser.add_argument("--badge", help="the officer's badge number (执法证号): letters, digits and '-'")

    serve = verbs.add_parser("serve", help="the officers' review page and API (FastAPI)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    db_option(serve)
    serve.add_argument("--queue", help=f"case queue URL (default: $REDIS_URL, else {DEFAULT_QUEUE})")
    evidence_option(serve)
    serve.add_argument("--streams", help="folder of camera files for names and places (default: ./streams)")
    serve.add_argument("--metrics-url", action="append", default=[],
                       help="a worker's Prometheus /metrics URL, for live camera state (repeatable)")
    serve.add_argument("--secure-cookies", action="store_true", help="mark the session cookie Secure (HTTPS)")
    serve.add_argument("--workflow", metavar="FILE", help="the 处置流程's table: case number prefix, units, hours "
                       "per violation kind (default: the packaged pipeline/review/workflow.yaml)")
    signing_options(serve, "that signs the audit chain's head, made (mode 0600) if absent; keep it where "
                    "whoever can write the database cannot")
    timezone_option(serve, "for times shown and times typed without an offset")
    serve.add_argument("--claim-minutes", type=_claim_minutes, metavar="MINUTES",
                       help=f"how long an officer's claim (认领) on a case lasts unless renewed (default "
                            f"{DEFAULT_CLAIM_S / 60:g}, at most {MAX_CLAIM_MINUTES:g})")
    serve.add_argument("--map-tiles", default=os.environ.get(MAP_TILES_ENV), metavar="URL",
                       help="a tile server drawn under the map page, e.g. https://tiles.example.org/{z}/{x}/{y}.png "
                            f"(default: ${MAP_TILES_ENV}; none: the map draws its SVG alone, needing no internet)")
    serve.add_argument("--map-attribution", default=os.environ.get(MAP_ATTRIBUTION_ENV), metavar="TEXT",
                       help=f"the tiles' credit line shown on the map (default: ${MAP_ATTRIBUTION_ENV})")
    serve.set_defaults(func=cmd_serve)

    users = verbs.add_parser("users", help="review accounts")
    user_verbs = users.add_subparsers(dest="users_verb", required=True)
    add = user_verbs.add_parser("add", help="add an account (password from --password-file, "
                                f"${PASSWORD_ENV} or a prompt)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=[role.value for role in AccountRole])
    add.add_argument("--password-file", help="file whose first line is the password")
    profile_options(add)
    db_option(add)
    add.set_defaults(func=cmd_users_add)
    listing = user_verbs.add_parser("list", help="list accounts, roles and states (active, disabled, "
                                    "must-change-password)")
    db_option(listing)
    listing.set_defaults(func=cmd_users_list)

    def account_verb(verb: str, func: Callable[..., int], what: str) -> argparse.ArgumentParser:
        parser = user_verbs.add_parser(verb, help=what)
        parser.add_argument("name")
        db_option(parser)
        parser.set_defaults(func=func)
        return parser

    account_verb("disable", cmd_users_disable, "disable an account: it cannot log in, its sessions end now")
    account_verb("enable", cmd_users_enable, "enable a disabled account")
    set_role = account_verb("set-role", cmd_users_set_role, "change an account's role, in force from its next request")
    set_role.add_argument("--role", required=True, choices=[role.value for role in AccountRole])
    reset = account_verb("reset-password", cmd_users_reset_password, "a one-time password (--password-file, "
                         f"${PASSWORD_ENV} or a prompt); the account's sessions end")
    reset.add_argument("--password-file", help="file whose first line is the password")
    reset.add_argument("--must-change", action=argparse.BooleanOptionalAction, default=True,
                       help="the user must choose their own password at the next login (default: yes)")
    account_verb("revoke-sessions", cmd_users_revoke_sessions, "end every session of an account now")
    profile_options(account_verb("set-profile", cmd_users_set_profile, "set (or, left out, clear) the display name "
                                 "and badge number that decisions record"))

    check = verbs.add_parser("verify", help="check the audit chain against its signed heads, and the evidence sha256s; "
                             "names the first break")
    check.add_argument("--case", help="check only this case's evidence (the chain is always checked whole)")
    check.add_argument("--expect-head", type=_expected_head, action="append", default=[], metavar="SEQ:SHA256",
                       help="an audit head noted down outside the system; the chain must still hold it (repeatable)")
    db_option(check)
    evidence_option(check)
    signing_options(check, "whose public half checks the signed heads: the service's key, or a public key PEM "
                    "such as a bundle's audit-public-key.pem")
    check.set_defaults(func=cmd_verify)

    dataset = verbs.add_parser("dataset", help="training data from reviewed cases")
    dataset_verbs = dataset.add_subparsers(dest="dataset_verb", required=True)
    export = dataset_verbs.add_parser("export", help="confirmed → YOLO positives, rejected as 误检 → hard negatives")
    export.add_argument("--since", required=True,
                        help="decided at or after this ISO 8601 time (no offset: on --timezone's clock)")
    export.add_argument("--out", default="annotations/reviewed", help="output folder (default annotations/reviewed)")
    timezone_option(export, "for a --since without an offset")
    db_option(export)
    evidence_option(export)
    export.set_defaults(func=cmd_dataset_export)
