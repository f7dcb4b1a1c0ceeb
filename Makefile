# Every target bootstraps what it needs: a venv from the pinned requirements/dev.txt.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export SAM_CLI_TELEMETRY ?= 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help venv test lint typecheck template-lint unit integration demo bench tune deploy-rehearsal lock clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): requirements/dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 required (found $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)  ## create the development venv from pinned requirements

test: lint typecheck template-lint $(STAMP)  ## everything CI runs: checks, then unit + integration tests in one pytest run
	$(BIN)/python -m pytest tests

lint: $(STAMP)  ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy (strict)
	$(BIN)/mypy

template-lint: $(STAMP)  ## sam validate --lint (cfn-lint) on template.yaml
	$(BIN)/sam validate --lint --template template.yaml

unit: $(STAMP)  ## unit tests (moto, no network)
	$(BIN)/python -m pytest tests/unit -q

integration: $(STAMP)  ## the whole pipeline through the local runner
	$(BIN)/python -m pytest tests/integration -q

demo: $(STAMP)  ## run the whole pipeline locally on sample images (embedded moto server)
	$(BIN)/pipeline demo $(ARGS)

bench: $(STAMP)  ## thumbnailer vs naive Pillow vs decode floor, side by side
	$(BIN)/pipeline bench $(ARGS)

tune: $(STAMP)  ## memory/cost tuning report for ThumbnailFunction
	$(BIN)/pipeline tune $(ARGS)

deploy-rehearsal: $(STAMP)  ## sam build + package + deploy to a local moto server
	$(BIN)/pipeline rehearse $(ARGS)

lock:  ## re-resolve requirements/dev.in into requirements/dev.txt
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r requirements/dev.in
	{ echo "# Pinned development environment, resolved from dev.in by 'make lock'. Do not edit by hand."; \
	  .venv-lock/bin/pip freeze --exclude-editable; } > requirements/dev.txt
	rm -rf .venv-lock

clean:  ## remove build outputs (keeps the venv)
	rm -rf .aws-sam build .pytest_cache .mypy_cache .ruff_cache
