# Each target sets itself up on a fresh machine: a virtual environment in .venv with what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: test test-oldest collector test-collector coverage demo bench bench-llm bench-bridge bench-wan bench-current bench-collector clean

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

# The OpenTelemetry Collector distribution the configs in collector-config/ run with, built by the
# Collector Builder from collector-config/builder-config.yaml (Go and its module proxy needed) into a
# cache outside the repository, once per machine: the directory is named after the manifest's
# sha256, so the binary is reused while the manifest is unchanged and rebuilt when it changes.
# tests/collector_binary.py computes the same path.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
OTELCOL_VERSION := v0.161.0
OTELCOL_MANIFEST := collector-config/builder-config.yaml
OTELCOL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/agentsight-otelcol
OTELCOL_KEY = $(shell (sha256sum $(OTELCOL_MANIFEST) 2>/dev/null || shasum -a 256 $(OTELCOL_MANIFEST)) | cut -c1-12)
OTELCOL_DIR = $(OTELCOL_CACHE)/$(OTELCOL_KEY)
OTELCOL_BIN = $(OTELCOL_DIR)/otelcol-agentsight
OTELCOL_BUILDER := $(OTELCOL_CACHE)/builder-$(OTELCOL_VERSION)/builder

$(OTELCOL_BUILDER):
	GOBIN=$(dir $@) $(GO) install go.opentelemetry.io/collector/cmd/builder@$(OTELCOL_VERSION)

# Built in a directory of its own and moved into place last: the binary is there only when complete,
# and two builds at once do not share sources.
collector: $(OTELCOL_BUILDER)
	@if [ -x "$(OTELCOL_BIN)" ]; then echo "collector: $(OTELCOL_BIN) (cached)"; else \
		set -e; mkdir -p "$(OTELCOL_DIR)"; work="$$(mktemp -d "$(OTELCOL_DIR)/build.XXXXXX")"; trap 'rm -rf "$$work"' EXIT; \
		PATH="$(dir $(GO)):$$PATH" $(OTELCOL_BUILDER) --config $(OTELCOL_MANIFEST) --output-path "$$work"; \
		cp $(OTELCOL_MANIFEST) "$(OTELCOL_DIR)/builder-config.yaml"; \
		mv "$$work/otelcol-agentsight" "$(OTELCOL_BIN)"; \
		echo "collector: $(OTELCOL_BIN)"; fi

# The Collector tests (the shipped configs validated and run end to end) with that binary. It is built
# first where Go is installed; the tests themselves (tests/collector_binary.py) skip, in one line, without
# Go or the module proxy, and fail when the build fails for another reason.
test-collector: $(VENV)/.test
	@if command -v $(GO) >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory collector || echo "make collector failed: the collector tests say why"; \
	else echo "no Go toolchain ($(GO)): the collector tests will skip"; fi
	$(PY) -m pytest -q -m collector $(wildcard tests/test_collector_*.py)

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

# agent -> gateway -> 2 bridges -> local API with the Collector built by `make collector`: turns/s and the
# latency the Collectors add, against the same load sent straight to the bridges.
bench-collector: $(VENV)/.test collector
	$(PY) bench/collector_pipeline.py $(ARGS)

clean:
	rm -rf $(VENV) $(OLDEST_VENV) bench/.*-venv
