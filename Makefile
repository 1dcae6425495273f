# Two commands on a fresh machine: `make demo` and `make test`.
# Both install from the committed lock file only (requirements.lock, every package pinned,
# transitive ones included); `make lock` regenerates it from pyproject.toml + requirements.in.
# torch==2.13.0 is installed first: a CPU build lies on disk, any other spec pulls GBs of CUDA.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
LOCK    := requirements.lock
EXTRAS  := dev,minilm,ray,llm
NODEPS  := requirements-nodeps.txt
NODEPS_NAMES := $(shell sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' $(NODEPS) | paste -sd'|')
PIPQ    := -m pip install -q --disable-pip-version-check
PIPTOOLS := pip-tools==7.7.0

.PHONY: demo test test-latest lint bench clean install lock

$(BIN)/python:
	$(PY) -m venv $(VENV)

# --no-deps: nothing outside the lock gets in; `pip check` proves the lock is complete (but for
# the data-only packages of requirements-nodeps.txt, whose declared dependencies we skip).
# --no-build-isolation: the package is built with the lock's setuptools, not today's.
$(STAMP): $(LOCK) $(NODEPS) pyproject.toml | $(BIN)/python
	$(BIN)/python $(PIPQ) "$$(grep '^pip==' $(LOCK))"
	$(BIN)/python $(PIPQ) torch==2.13.0
	$(BIN)/python $(PIPQ) --no-deps -r $(LOCK)
	$(BIN)/python $(PIPQ) --no-deps --no-build-isolation -e .
	$(BIN)/python $(PIPQ) --no-deps --require-hashes -r $(NODEPS)
	@$(BIN)/python -m pip check | grep -vE '^($(NODEPS_NAMES)) ' | grep -v '^No broken' \
	  && { echo "pip check: the lock is incomplete (run make lock)"; exit 1; } || true
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/picojoule study --out picojoule-report

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/python -m pytest -q -n 2 -p no:cacheprovider

# Regenerates the lock for Python 3.11 on Linux x86-64 (run it on this kind of machine).
lock:
	$(PY) -m venv .venv-lock
	.venv-lock/bin/python $(PIPQ) $(PIPTOOLS)
	.venv-lock/bin/pip-compile --quiet --allow-unsafe --strip-extras --extra $(EXTRAS) \
	  --no-emit-index-url --no-emit-find-links --output-file $(LOCK) pyproject.toml requirements.in

# Drift check, not CI: the newest release of every package (torch stays the on-disk CPU build).
test-latest:
	rm -rf .venv-latest
	$(PY) -m venv .venv-latest
	.venv-latest/bin/python $(PIPQ) --upgrade pip
	.venv-latest/bin/python $(PIPQ) torch==2.13.0
	.venv-latest/bin/python $(PIPQ) --upgrade --upgrade-strategy eager -e ".[$(EXTRAS)]"
	.venv-latest/bin/python $(PIPQ) --no-deps --require-hashes -r $(NODEPS)
	.venv-latest/bin/python -m pytest -q -n 2 -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_formats.py
	$(BIN)/python benchmarks/bench_study.py

clean:
	rm -rf $(VENV) .venv-lock .venv-latest picojoule-report .pytest_cache
