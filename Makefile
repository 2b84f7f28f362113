# Two commands do all set-up on a fresh machine: `make test` and `make run`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: test test-full run lint tables bench wheel clean-venv

# The library installs in editable mode (distribution stochastic-softmax-tricks, import name sst). flit's editable
# install is a .pth file naming the folder that holds sst, the repository root, so the repository's own packages
# (experiments, imported by run.py and scripts/*.py) resolve from the checkout too; the wheel holds sst only.
# The uninstall drops the editable install of this repository's old distribution name, sst.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@$(PY) -m pip uninstall -q -y sst 2>/dev/null || true
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
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

# The library's wheel (sst only) in dist/; nothing else is written to the checkout.
wheel: $(STAMP)
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w dist .

clean-venv:
	rm -rf $(VENV)
