# Two commands for a fresh machine: `make demo` (the patrol on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install test-servers clean

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

test: test-servers $(BIN)/.installed
	$(BIN)/pytest

clean:
	rm -rf var .pytest_cache
