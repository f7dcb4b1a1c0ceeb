# Every target bootstraps what it needs: a venv from the pinned requirements/dev.txt.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# checkov gets a venv of its own: its pins conflict with aws-sam-cli's.
SECURITY_VENV ?= .venv-security
SECURITY_STAMP := $(SECURITY_VENV)/.installed-stamp
export SAM_CLI_TELEMETRY ?= 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help venv build test lint typecheck template-lint unit integration demo up backfill scale-model bench conformance tune deploy-rehearsal lock lock-security security clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): requirements/dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 required (found $$($(PYTHON) --version))"; exit 1; }
	@echo "setting up $(VENV) from requirements/dev.txt (first run only: 1-2 minutes) ..."
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -qq --disable-pip-version-check -r requirements/dev.txt
	$(BIN)/python -m pip install -qq --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)  ## create the development venv from pinned requirements

$(SECURITY_STAMP): requirements/security.txt
	test -x $(SECURITY_VENV)/bin/python || $(PYTHON) -m venv $(SECURITY_VENV)
	$(SECURITY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SECURITY_VENV)/bin/python -m pip install --quiet -r requirements/security.txt
	touch $(SECURITY_STAMP)

# Two pytest workers, one per core of the 2-core CI machine; --dist loadfile keeps a file's tests on
# one worker, so a module's deployed twin is built once (the backfill file runs beside the rest).
test: lint typecheck template-lint security $(STAMP)  ## everything CI runs: checks, then unit + integration tests in one pytest run
	$(BIN)/python -m pytest tests -n 2 --dist loadfile

lint: $(STAMP)  ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy (strict)
	$(BIN)/mypy

template-lint: $(STAMP)  ## sam validate --lint (cfn-lint) on template.yaml
	$(BIN)/sam validate --lint --template template.yaml

# Scanned twice: as written (Metadata skips sit next to the resources), with the Fn::ForEach loops
# unrolled (checkov does not expand them and would skip their resources), and as deployed, after
# the SAM transform, where the generated roles, permissions and APIs become visible to the checks;
# with every optional feature on (checkov leaves out resources whose Condition is false).
security: $(STAMP) $(SECURITY_STAMP)  ## checkov on template.yaml (loops unrolled) and on its CloudFormation translation
	$(BIN)/pipeline translate --all-features --expand-only -o build/security/template.expanded.json
	$(BIN)/pipeline translate --all-features -o build/security/template.cfn.json
	CKV_PARSE_ERROR_FAIL=true CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE $(SECURITY_VENV)/bin/checkov --framework cloudformation \
	  --skip-download --compact --quiet -f build/security/template.expanded.json -f build/security/template.cfn.json

unit: $(STAMP)  ## unit tests (moto, no network)
	$(BIN)/python -m pytest tests/unit -q

integration: $(STAMP)  ## the whole pipeline through the local runner
	$(BIN)/python -m pytest tests/integration -q

demo: $(STAMP)  ## run the whole pipeline locally on sample images (embedded moto server)
	$(BIN)/pipeline demo $(ARGS)

up: $(STAMP)  ## the local stack on localhost:4566 until Ctrl-C; writes build/up/env.json and aws.env
	$(BIN)/pipeline up $(ARGS)

backfill: $(STAMP)  ## re-render a library locally with BackfillStateMachine (progress bar, summary)
	$(BIN)/pipeline backfill $(ARGS)

scale-model: $(STAMP)  ## the backfill's wall time and cost for 10^4..10^8 images (table + plot in docs/)
	$(BIN)/pipeline scale-model $(ARGS)

bench: $(STAMP)  ## thumbnailer vs naive Pillow vs decode floor, side by side
	$(BIN)/pipeline bench $(ARGS)

conformance: $(STAMP)  ## ~1,100 real-world images (Pillow's and pi-heif's test files, cached) vs a reference; HTML sheet
	$(BIN)/pipeline conformance $(ARGS)

tune: $(STAMP)  ## memory/cost tuning report for ThumbnailFunction
	$(BIN)/pipeline tune $(ARGS)

deploy-rehearsal: $(STAMP)  ## sam build + package + deploy to a local moto server
	$(BIN)/pipeline rehearse $(ARGS)

build: $(STAMP)  ## sam build with the functions' Python (pyenv's 3.12/3.13 found for you), no deploy
	$(BIN)/pipeline rehearse --build-only

lock:  ## re-resolve requirements/dev.in into requirements/dev.txt
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r requirements/dev.in
	{ echo "# Pinned development environment, resolved from dev.in by 'make lock'. Do not edit by hand."; \
	  .venv-lock/bin/pip freeze --exclude-editable; } > requirements/dev.txt
	rm -rf .venv-lock

lock-security:  ## re-resolve requirements/security.in into requirements/security.txt
	rm -rf .venv-lock-security && $(PYTHON) -m venv .venv-lock-security
	.venv-lock-security/bin/pip install --quiet -r requirements/security.in
	{ echo "# Pinned security scanners, resolved from security.in by 'make lock-security'. Do not edit by hand."; \
	  .venv-lock-security/bin/pip freeze; } > requirements/security.txt
	rm -rf .venv-lock-security

clean:  ## remove build outputs (keeps the venv)
	rm -rf .aws-sam build .pytest_cache .mypy_cache .ruff_cache
