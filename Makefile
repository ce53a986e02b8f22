# Two commands for a fresh machine: `make demo` (the patrol on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast install test-servers clean

# The tests start many Python processes (pytest's workers, `patrol` and servers in processes of their
# own); where the environment sets PYTHONDONTWRITEBYTECODE (this machine's does), each compiles the
# project's modules again and each worker rewrites the asserts of pytest's plugins (hypothesis,
# schemathesis: some two hundred modules) again. Written once, they are read after.
TEST_ENV := env -u PYTHONDONTWRITEBYTECODE

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/patrol demo

# redis-server and a GStreamer RTSP server from Debian: the tests start real ones on loopback
test-servers:
	tests/servers/install-packages.sh

# The whole suite (what .ci/run runs), in four processes on two cores: the many tests that wait on
# real time (live video, servers) leave room for the others (on a clean clone here, 2026-12-07:
# 5:39 with four, 5:58 with three; 5:21 with four once Python may write bytecode). A module runs
# whole in one process (loadfile), so its module-scoped runs (a replay, a training) are made once
# and the fleet's tests, which time leases, take turns. conftest puts the slowest modules first; --no-loadscope-reorder
# keeps that order (pytest-xdist would send the modules with the most tests first). (xdist_group marks
# are no use: pytest 9.2's node ids drop the group pytest-xdist adds, pytest-xdist issue 1386.)
test: test-servers $(BIN)/.installed
	$(TEST_ENV) $(BIN)/pytest -n 4 --dist loadfile --no-loadscope-reorder

# What starts no server, plays no video in real time and runs no model over a whole video or a
# training set (the markers in pyproject.toml), spread test by test: under 2 minutes on a 2-core
# box, in two processes; no test-servers.
test-fast: $(BIN)/.installed
	$(TEST_ENV) $(BIN)/pytest -n 2 --dist load -m "not servers and not realtime and not heavy"

clean:
	rm -rf var .pytest_cache
