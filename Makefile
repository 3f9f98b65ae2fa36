# faultsift: `make run` runs the study on the built-in models; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= runs/study-$(shell date +%Y%m%d-%H%M%S)

.PHONY: install run test test-slow bench zoo-train clean chromium

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/faultsift study --out $(OUT)

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

# headless Chromium renders the HTML report in one test (skipped, with the reason, where it is missing)
chromium:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed: the report rendering test will be skipped"

# benchmarks: the fast engine against pytorchfi (installed here only), and the fault models
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,bench]"
	$(BIN)/python bench/engine_vs_pytorchfi.py
	$(BIN)/python bench/fault_models.py

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

zoo-train: $(STAMP)
	$(BIN)/faultsift zoo train

clean:
	rm -rf $(VENV) build src/*.egg-info
