# One entry point for everything a developer runs. `make test` is what CI runs.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .venv-tools/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

.PHONY: help venv lint typecheck test test-pulsar e2e-docker e2e-images demo demo-reset bench chaos clean \
	e2e-k8s e2e-k8s-api k8s-build k8s-up k8s-down k8s-status

help:
	@echo "make demo         embedded broker + producer + two consumers, as processes"
	@echo "                  (ports: DEMO_BROKER_PORT=8080, DEMO_HTTP_PORT=8001 and the two after it)"
	@echo "make demo-reset   forget the demo broker's stored messages (.cache/demo-broker)"
	@echo "make test         lint, type-check and the whole test suite (what CI runs)"
	@echo "make test-pulsar  the conformance and end-to-end suites against a real Apache Pulsar"
	@echo "make bench        benchmarks -> bench/results/latest.json (BENCH_QUICK=1 for a short run)"
	@echo "make chaos        fault-injection suite -> bench/results/chaos.json"
	@echo "make e2e-docker   docker compose up --scale consumer=N for real: Pulsar, lite, Macrometa (root, Linux)"
	@echo "make e2e-images   the service images and the Pulsar image -> .cache/e2e/images.tar"
	@echo "make e2e-k8s      the demo overlay on a real one-node Kubernetes (root; builds it once, minutes)"
	@echo "make e2e-k8s-api  every overlay against a real kube-apiserver (dry-run=server, Pod Security)"
	@echo "make clean        remove the environments and tool caches (keeps .cache: Pulsar jars, images, demo data)"

$(UV):
	python3 -m venv .venv-tools && .venv-tools/bin/pip install -q 'uv>=0.5'

# Creates or updates .venv from uv.lock (pinned versions): library, services and dev tools.
venv: $(UV)
	$(UV) sync --frozen --all-packages

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check shared services tests bench scripts harness

typecheck: venv
	$(VENV)/bin/mypy shared/streampair services/producer/producer services/consumer/consumer services/broker/broker

test: lint typecheck
	$(VENV)/bin/pytest

test-pulsar: venv
	$(VENV)/bin/pytest -m pulsar -o addopts='-ra'

# Its own dockerd under .cache/e2e (stopped at the end); needs root. See README "How the compose files are verified".
e2e-docker:
	scripts/e2e/docker.sh run

e2e-images:
	scripts/e2e/docker.sh images

demo: venv
	$(PY) scripts/demo.py

demo-reset:
	rm -rf .cache/demo-broker
	@echo "demo data removed: the next make demo starts with an empty stream"

bench: venv
	$(PY) -m bench

chaos: venv
	$(PY) -m bench.chaos

# Real Kubernetes (scripts/e2e/k8s/README.md). Binaries are built once per version into .cache/k8s;
# e2e-images rebuilds the image archive only when the sources changed (a no-op otherwise).
E2E_IMAGES := .cache/e2e/images.tar

e2e-k8s: e2e-images
	scripts/e2e/k8s/e2e.sh $(E2E_IMAGES)

e2e-k8s-api:
	scripts/e2e/k8s/api-check.sh

k8s-build:
	scripts/e2e/k8s/build.sh

k8s-up: e2e-images
	scripts/e2e/k8s/up.sh $(E2E_IMAGES)

k8s-down:
	scripts/e2e/k8s/down.sh

k8s-status:
	scripts/e2e/k8s/status.sh

clean:
	rm -rf $(VENV) .venv-tools .pytest_cache .mypy_cache .ruff_cache
	@echo "kept .cache/ (Pulsar jars, built images and binaries, the demo's data: make demo-reset); rm -rf .cache to drop it"
