# Each target sets itself up on a fresh machine: a virtual environment in .venv with what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: test test-oldest coverage demo bench bench-llm bench-bridge bench-wan bench-current clean

$(VENV)/.test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,demo]'
	touch $@

test: $(VENV)/.test
	@# The dashboard test drives a headless Chromium: as root on Debian, install it when missing (else it skips).
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the dashboard test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "chromium could not be installed: the dashboard test will be skipped"; \
	fi
	$(PY) -m ruff check src tests bench examples
	$(PY) -m pytest -q

# The instrumentation tests against the oldest release of each LLM client an instrumentor accepts
# (tests/oldest-clients.txt), in a venv of their own; a test needing a newer client skips, saying why.
OLDEST_VENV ?= .venv-oldest
OLDEST_TESTS := $(wildcard tests/test_instrument_*.py) tests/test_context_follows_work.py

$(OLDEST_VENV)/.test: pyproject.toml tests/oldest-clients.txt
	rm -rf $(OLDEST_VENV)
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST_VENV)/bin/python -m pip install --quiet -e '.[dev]' pytest opentelemetry-distro -r tests/oldest-clients.txt
	touch $@

test-oldest: $(OLDEST_VENV)/.test
	$(OLDEST_VENV)/bin/python -m pytest -q -p no:cacheprovider $(OLDEST_TESTS)

# The whole suite under coverage.py, the Python processes it starts included ([tool.coverage.run] in
# pyproject.toml); prints the files not fully covered and the total. Fails when a test fails.
coverage: $(VENV)/.test
	$(PY) -m coverage erase
	$(PY) -m coverage run -m pytest -q; status=$$?; \
		$(PY) -m coverage combine -q && $(PY) -m coverage report --skip-covered --sort=cover && \
		echo "total coverage: $$($(PY) -m coverage report --format=total)%"; exit $$status

demo: $(VENV)/.test
	$(PY) examples/demo.py $(ARGS)

bench: $(VENV)/.test
	$(PY) bench/run.py $(ARGS)

bench-llm: $(VENV)/.test
	$(PY) bench/llm_overhead.py $(ARGS)

bench-bridge: $(VENV)/.test
	$(PY) bench/bridge_ingest.py $(ARGS)

bench-wan: $(VENV)/.test
	$(PY) bench/wan.py $(ARGS)

bench-current: $(VENV)/.test
	$(PY) bench/current_api.py $(ARGS)

clean:
	rm -rf $(VENV) $(OLDEST_VENV) bench/.upstream-venv bench/.official-venv
