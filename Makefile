# Two commands do all set-up on a fresh machine: `make test` and `make run`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: test test-full run lint tables bench clean-venv

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-full: $(STAMP)
	$(PY) -m pytest -q

# A short NRI job that learns the graph on a CPU (2 minutes on an idle 2-core CPU), then a summary; ARGS go to
# experiments/quickstart.py (e.g. ARGS="--seeds 0 1"). The paper-scale run is `python run.py experiment=nri` (GPU).
run: $(STAMP)
	$(PY) -m experiments.quickstart $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

tables: $(STAMP)
	$(PY) scripts/make_tables.py --readme README.md docs/l2x.md docs/vae.md docs/nri.md
	$(PY) scripts/plot_l2x.py
	$(PY) scripts/plot_l2x.py --w2v-epochs 5 -o results/l2x/table_w2v5.png
	$(PY) scripts/plot_l2x_margins.py
	$(PY) scripts/plot_l2x_pairwise.py
	$(PY) scripts/l2x_learning_curve.py

bench: $(STAMP)
	$(PY) benchmarks/bench_relaxations.py

clean-venv:
	rm -rf $(VENV)
