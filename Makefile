# One entry point for everything a developer runs. `make test` is what CI runs.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .venv-tools/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

.PHONY: help venv lint typecheck test test-pulsar demo bench chaos clean e2e-k8s e2e-k8s-api k8s-build k8s-up k8s-down k8s-status

help:
	@echo "make demo         embedded broker + producer + two consumers, as processes"
	@echo "make test         lint, type-check and the whole test suite (what CI runs)"
	@echo "make test-pulsar  the conformance and end-to-end suites against a real Apache Pulsar"
	@echo "make bench        benchmarks -> bench/results/latest.json (BENCH_QUICK=1 for a short run)"
	@echo "make chaos        fault-injection suite -> bench/results/chaos.json"
	@echo "make e2e-k8s      the demo overlay on a real one-node Kubernetes (root; builds it once, minutes)"
	@echo "make e2e-k8s-api  every overlay against a real kube-apiserver (dry-run=server, Pod Security)"

$(UV):
	python3 -m venv .venv-tools && .venv-tools/bin/pip install -q 'uv>=0.5'

# Creates or updates .venv from uv.lock (pinned versions): library, services and dev tools.
venv: $(UV)
	$(UV) sync --frozen --all-packages

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check shared services tests bench scripts

typecheck: venv
	$(VENV)/bin/mypy shared/streampair

test: lint typecheck
	$(VENV)/bin/pytest

test-pulsar: venv
	$(VENV)/bin/pytest -m pulsar -o addopts='-ra'

demo: venv
	$(PY) scripts/demo.py

bench: venv
	$(PY) -m bench

chaos: venv
	$(PY) -m bench.chaos

# Real Kubernetes (scripts/e2e/k8s/README.md). Binaries are built once per version into .cache/k8s.
E2E_IMAGES := .cache/e2e/images.tar

$(E2E_IMAGES):
	$(MAKE) e2e-images

e2e-k8s: $(E2E_IMAGES)
	scripts/e2e/k8s/e2e.sh $(E2E_IMAGES)

e2e-k8s-api:
	scripts/e2e/k8s/api-check.sh

k8s-build:
	scripts/e2e/k8s/build.sh

k8s-up: $(E2E_IMAGES)
	scripts/e2e/k8s/up.sh $(E2E_IMAGES)

k8s-down:
	scripts/e2e/k8s/down.sh

k8s-status:
	scripts/e2e/k8s/status.sh

clean:
	rm -rf $(VENV) .venv-tools .pytest_cache .mypy_cache .ruff_cache
