"""Forty officers logging in at once cost the review service four password hashes' memory, not
forty: a real `patrol serve` process, its peak resident memory read from the kernel (VmHWM)."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from review_support import PASSWORD, STREAMS
from support import PATROL, REPO, free_port, wait_for

pytestmark = pytest.mark.servers  # a `patrol serve` process on a port

LOGINS = 40
HASHES_AT_ONCE = 4  # what the service allows (auth.HASHES_AT_ONCE), stated here as the bound's
HASH_MIB = 64  # argon2id's memory cost per hash (the library's default parameters)
# The bound this test states: the service at rest, plus the hashes allowed at once, plus 64 MiB of
# slack for the threads and buffers of forty open requests. Forty hashes at once would need 2.5 GiB.
SLACK_MIB = 64


def memory_mib(pid: int) -> dict[str, float]:
    """The process's resident memory now (VmRSS) and at its peak (VmHWM), in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def log_in(url: str) -> int:
    body = json.dumps({"name": "officer1", "password": PASSWORD}).encode()
    request = urllib.request.Request(f"{url}/api/login", data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code
    except urllib.error.URLError:  # not listening (yet)
        return 0


def test_forty_concurrent_logins_keep_the_service_within_four_hashes_of_memory(tmp_path: Path) -> None:
    db = tmp_path / "review" / "review.sqlite3"
    env = {**os.environ, "PATROL_PASSWORD": PASSWORD}
    subprocess.run([*PATROL, "users", "add", "officer1", "--role", "officer", "--db", str(db)], env=env, check=True,
                   cwd=REPO, capture_output=True)
    port = free_port()
    server = subprocess.Popen(
        [*PATROL, "serve", "--db", str(db), "--queue", f"sqlite:///{tmp_path / 'queue.sqlite3'}",
         "--evidence", str(tmp_path / "evidence"), "--streams", str(STREAMS), "--port", str(port)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: log_in(url) == 200, 60, "the review service answering a login")
        at_rest = memory_mib(server.pid)["VmRSS"]
        with ThreadPoolExecutor(max_workers=LOGINS) as pool:
            answers = list(pool.map(lambda _: log_in(url), range(LOGINS)))
        peak = memory_mib(server.pid)["VmHWM"]
    finally:
        server.terminate()
        server.wait(30)
    bound = at_rest + HASHES_AT_ONCE * HASH_MIB + SLACK_MIB
    print(f"{LOGINS} concurrent logins: {answers.count(200)} signed in, {answers.count(503)} asked to retry; "
          f"resident {at_rest:.0f} MiB at rest, peak {peak:.0f} MiB, bound {bound:.0f} MiB")
    assert set(answers) <= {200, 503} and answers.count(200) >= HASHES_AT_ONCE
    assert peak <= bound, f"peak {peak:.0f} MiB over the bound {bound:.0f} MiB"
