"""`patrol forward`: POST every case to the city's case platform, as the queue's `forward` consumer group;
or, with --from-review, the review store's status changes (pipeline/review/outbox.py)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pipeline.cli.errors import UsageError
from pipeline.config import Workspace
from pipeline.queue.base import REVIEW_GROUP
from pipeline.queue.forward import FORWARD_GROUP, QUEUE_DOWN, TOKEN_ENV, Endpoint, Forwarder, RetryPolicy, Tally

if TYPE_CHECKING:  # the review side is imported only when --from-review asks for it
    from pipeline.review.outbox import OutboxForwarder


def add_forward_verbs(verbs: argparse._SubParsersAction) -> None:
    """Adds `patrol forward` to the `patrol` parser."""
    forward = verbs.add_parser(
        "forward", help="POST each case to the city's case platform (its own consumer group; acknowledged on 2xx)",
        description="Reads the case queue as its own consumer group and POSTs each case as JSON to --to, with "
        f"the case id as Idempotency-Key and, when ${TOKEN_ENV} is set, 'Authorization: Bearer' with it. 2xx "
        "acknowledges the case; connection errors, timeouts, 408, 429 and 5xx are retried with capped "
        "exponential backoff (or after Retry-After) for --give-up-after seconds; any other answer is logged "
        "as a refusal. A case not acknowledged stays pending and is offered again after --redeliver-after. "
        "Runs until SIGTERM or Ctrl-C (the POST in flight is finished first). With --from-review it sends the "
        "review store's status changes instead (confirmed, filed, dispatched, disposed, closed, withdrawn), oldest "
        "first, under the Idempotency-Key '<case id>/<audit seq>'; a refused change holds back its case's later "
        "ones and is tried again after --redeliver-after.")
    forward.add_argument("--to", required=True, metavar="URL",
                         help=f"the platform's endpoint, http:// or https:// (bearer token from ${TOKEN_ENV})")
    forward.add_argument("--from-review", metavar="DB",
                         help="send the status changes of this review store (SQLite) instead of the queue's cases")
    forward.add_argument("--var", default="var", help="working folder of the embedded queue")
    forward.add_argument("--queue", help="case queue URL: redis://host:port/db or sqlite:///path "
                         "(default: $REDIS_URL, else SQLite under --var)")
    forward.add_argument("--group", default=FORWARD_GROUP,
                         help=f"consumer group (default {FORWARD_GROUP}; never {REVIEW_GROUP}, the officers')")
    forward.add_argument("--consumer", default=f"forward-{socket.gethostname()}",
                         help="this process's name in the group (default forward-HOSTNAME)")
    forward.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds one POST may take (default 10)")
    forward.add_argument("--backoff", type=float, default=1.0, metavar="S",
                         help="first wait before a POST is tried again, doubling each time (default 1)")
    forward.add_argument("--backoff-max", type=float, default=30.0, metavar="S", help="longest wait between tries (default 30)")
    forward.add_argument("--give-up-after", type=float, default=120.0, metavar="S",
                         help="stop trying a case after this long and leave it pending (default 120)")
    forward.add_argument("--redeliver-after", type=float, default=300.0, metavar="S",
                         help="the queue's visibility timeout: a case left pending is offered again after this "
                         "long (with --from-review: a refused status change is tried again after this long); "
                         "must exceed --give-up-after plus --timeout (default 300)")
    forward.add_argument("--once", action="store_true",
                         help="stop when the queue has nothing new (exit 1 if a case was refused or deferred)")
    forward.set_defaults(func=cmd_forward)


def cmd_forward(args: argparse.Namespace) -> int:
    from pipeline.queue import open_queue

    if args.group == REVIEW_GROUP:
        raise UsageError(f"--group {REVIEW_GROUP}: that is the officers' group; forwarding would take their cases")
    for option, value in (("--timeout", args.timeout), ("--backoff", args.backoff),
                          ("--backoff-max", args.backoff_max), ("--redeliver-after", args.redeliver_after)):
        if not value > 0:
            raise UsageError(f"{option} {value}: must be more than 0 seconds")
    try:
        retry = RetryPolicy(first_s=args.backoff, max_s=args.backoff_max, give_up_after_s=args.give_up_after)
    except ValueError as exc:
        raise UsageError(f"--backoff / --backoff-max / --give-up-after: {exc}") from exc
    if args.redeliver_after <= args.give_up_after + args.timeout:
        # Otherwise the queue would hand a case to a second forwarder while this one still tries it.
        raise UsageError(f"--redeliver-after {args.redeliver_after}: must exceed --give-up-after plus --timeout "
                         f"({args.give_up_after + args.timeout:g} s)")
    try:
        endpoint = Endpoint(args.to, token=os.environ.get(TOKEN_ENV) or None, timeout_s=args.timeout)
    except ValueError as exc:
        raise UsageError(f"--to {_hide_credentials(args.to)}: {exc}") from exc
    if args.from_review:
        return _forward_review_changes(args, endpoint, retry)

    queue_url = args.queue or os.environ.get("REDIS_URL") or Workspace(Path(args.var)).queue_url
    try:
        queue = open_queue(queue_url, group=args.group, visibility_timeout_s=args.redeliver_after)
    except (ValueError, OSError, sqlite3.Error) as exc:
        raise UsageError(f"--queue / REDIS_URL: {exc}") from exc
    with queue:
        try:
            queue.pending_count()  # Redis connects lazily: an unreachable queue is reported now, not later
        except QUEUE_DOWN as exc:
            raise UsageError(f"--queue / REDIS_URL: {exc}") from exc
        forwarder = Forwarder(queue, endpoint, consumer=args.consumer, retry=retry,
                              print_line=lambda line: print(line, flush=True))
        print(f"forward: cases of {_queue_place(queue_url)} as group {args.group!r}, consumer {args.consumer!r} "
              f"→ {_sending_to(endpoint, args.once)}", flush=True)
        try:
            tally = _run_until_stopped(forwarder, args.once, Tally.line)
        except QUEUE_DOWN as exc:  # with --once an outage ends the run: a script must hear of it
            raise UsageError(f"--queue / REDIS_URL: {exc}") from exc
    return 1 if args.once and (tally.refused or tally.deferred) else 0


def _forward_review_changes(args: argparse.Namespace, endpoint: Endpoint, retry: RetryPolicy) -> int:
    from pipeline.review.db import ReviewDatabase
    from pipeline.review.outbox import Outbox, OutboxForwarder

    if args.queue:
        raise UsageError("--queue: with --from-review the review store's status changes are sent, not the queue's")
    path = Path(args.from_review)
    if not path.is_file():
        raise UsageError(f"--from-review {path}: no review store there")
    db = ReviewDatabase(path)
    try:
        forwarder = OutboxForwarder(Outbox(db), endpoint, retry=retry, retry_refused_after_s=args.redeliver_after,
                                    print_line=lambda line: print(line, flush=True))
        print(f"forward: status changes of the review store {path} → {_sending_to(endpoint, args.once)}", flush=True)
        tally = _run_until_stopped(forwarder, args.once, lambda tally: (
            f"forward: stopped; {tally.forwarded} status changes forwarded, {tally.refused} refused, "
            f"{tally.deferred} deferred (those not forwarded stay in the review store's outbox and are sent, in "
            "order, by the next run)"))
    finally:
        db.close()
    return 1 if args.once and (tally.refused or tally.deferred) else 0


def _sending_to(endpoint: Endpoint, once: bool) -> str:
    token = f", bearer token from ${TOKEN_ENV}" if endpoint.has_token else ""
    until = "until nothing is new" if once else "SIGTERM or Ctrl-C stops"
    return f"{endpoint.display}{token}; {until}"


def _run_until_stopped(forwarder: Forwarder | OutboxForwarder, once: bool, summary: Callable[[Tally], str]) -> Tally:
    """``forwarder.run``, stopped by SIGTERM or Ctrl-C; prints ``summary`` of its tally however it ends."""
    # Ctrl-C too only asks to stop, so the POST in flight is finished and acknowledged, never cut.
    # The ask goes through a thread: the handler runs on the main thread between two bytecodes,
    # maybe inside the stop Event's own lock, which setting the Event there would wait for forever.
    previous = {number: signal.signal(number, lambda *_: threading.Thread(target=forwarder.stop).start())
                for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        return forwarder.run(once=once)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        print(summary(forwarder.tally), flush=True)


def _queue_place(url: str) -> str:
    """Where the queue is, without the password a Redis URL may carry."""
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"
    return url


def _hide_credentials(url: str) -> str:
    """``url`` fit for a message: a password put in it by mistake is not printed back."""
    scheme, separator, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if not separator or "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"
