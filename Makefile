# Everything runs inside an isolated virtual environment (.venv by default).
# torch is installed as the CPU build 2.13.0 only when the environment has no torch yet;
# an existing torch is pinned so that no later install replaces it.
VENV ?= .venv
PY := $(VENV)/bin/python
ALGORITHM ?= bfs
# a shipped checkpoint to study instead of ALGORITHM's default (its best: the discrete one where
# shipped), e.g. dijkstra for the continuous model
# (its algorithm comes from the checkpoint; the report goes to runs/CHECKPOINT)
CHECKPOINT ?=

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]" "torch==$$($(PY) -c 'import torch; print(torch.__version__.split("+")[0])')"
	touch $@

demo: install
	$(VENV)/bin/hooked-nar study $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT),--algorithm $(ALGORITHM)) --output runs/$(or $(CHECKPOINT),$(ALGORITHM)) --browser

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) benchmarks/bench_algorithms.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
