# `make demo` and `make test` each bootstrap .venv from uv.lock on a fresh machine (only python3 needed), then run.
PYTHON     ?= python3
VENV       ?= .venv
BIN        := $(VENV)/bin
UV_VERSION := 0.13.9
UV_HOME    := .uv
UV         := $(UV_HOME)/bin/uv
STAMP      := $(VENV)/.installed-stamp
LATEST     := .venv-latest
# uv never downloads a Python of its own: it uses $(PYTHON).
export UV_PYTHON_DOWNLOADS := never

.PHONY: demo test lint typecheck unit bench lock test-latest image clean

# uv itself comes from PyPI, pinned, into a venv of its own.
$(UV):
	@test -x $(UV_HOME)/bin/python || $(PYTHON) -m venv $(UV_HOME)
	@$(UV_HOME)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

# Exactly what uv.lock says, nothing newer: --frozen fails rather than re-resolving.
$(STAMP): pyproject.toml uv.lock | $(UV)
	@UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --extra dev --python $(PYTHON) --quiet
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ebb demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench

# Re-resolve every dependency to its newest release allowed by pyproject.toml; commit uv.lock with the change.
lock: | $(UV)
	$(UV) lock --upgrade --python $(PYTHON)

# The suite against the newest releases, ignoring the lock: tells us when to run `make lock`. CI does not run it.
test-latest: | $(UV)
	@test -x $(LATEST)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(LATEST)
	$(UV) pip install --quiet --upgrade --python $(LATEST)/bin/python -e ".[dev]"
	$(LATEST)/bin/ruff check src tests bench
	$(LATEST)/bin/ruff format --check src tests bench
	$(LATEST)/bin/mypy
	$(LATEST)/bin/pytest

# The operator image, tagged as the Helm chart expects by default (image.repository ebb, tag = appVersion =
# the project's version). Needs a Docker engine (or DOCKER=podman); says so clearly where there is none.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE   ?= ebb:$(VERSION)
DOCKER  ?= docker
image:
	@command -v $(DOCKER) >/dev/null 2>&1 || { echo "make image: '$(DOCKER)' is not installed; install Docker (or set DOCKER=podman) to build $(IMAGE)" >&2; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { echo "make image: no container engine answers ('$(DOCKER) info' failed); start Docker to build $(IMAGE)" >&2; exit 1; }
	$(DOCKER) build -f deploy/Dockerfile -t $(IMAGE) .

clean:
	rm -rf $(VENV) $(LATEST) $(UV_HOME) .pytest_cache .mypy_cache .ruff_cache test-output
