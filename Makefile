# imbsweep — every target creates .venv when it is missing.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch first, pinned: 2.13.0 is a CPU wheel on this machine's disk; the project's range admits it.
TORCH  ?= torch==2.13.0
# torchvision right after it, pinned to the release built for torch 2.13.0 (0.29 wants torch 2.14 and
# would pull a CUDA build); imbsweep uses its Python parts (transforms, models, ImageFolder)
TORCHVISION ?= torchvision==0.28.0
PORT   ?= 5000

.DEFAULT_GOAL := help
.PHONY: help venv demo test test-all ui docs bench lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet "$(TORCHVISION)"
	$(BIN)/python -m pip install --quiet -e ".[dev,docs]"
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install imbsweep with its dev and docs tools

# the demo tournament: 6 of tricks.yaml's 13 trained arms, 8 trials each (Hyperband within each arm),
# 20 epochs, and the post-hoc logit-adjustment arm on CE's models
DEMO_ARMS := ~hydra.sweeper.arms.focal ~hydra.sweeper.arms.class_balanced ~hydra.sweeper.arms.ce_maxnorm \
	~hydra.sweeper.arms.ce_crt ~hydra.sweeper.arms.ce_lws ~hydra.sweeper.arms.ce_mixup \
	~hydra.sweeper.arms.ce_remix ~hydra.sweeper.posthoc_arms.ce_taunorm

demo: $(STAMP) ## a fair tournament on MNIST-1D-LT (6 arms incl. tuned CE x 8 trials, 2 workers), then paired re-runs on 5 seeds and the comparison (reproducible: the same verdicts every run)
	$(BIN)/imbsweep sweep tricks hydra.sweeper.study_name=demo hydra.sweeper.trials_per_arm=8 \
		hydra.sweeper.n_jobs=2 hydra.sweeper.reproducible=true trainer.epochs=20 $(DEMO_ARMS)
	$(BIN)/imbsweep compare demo --reseed 5

test: $(STAMP) ## run the test suite (tests marked slow are skipped)
	$(BIN)/python -m pytest

test-all: $(STAMP) ## run every test, the slow ones included
	$(BIN)/python -m pytest -m "slow or not slow"

ui: $(STAMP) ## open the stock MLflow UI on the local store (PORT=5000)
	$(BIN)/imbsweep ui --port $(PORT)

# NO_MKDOCS_2_WARNING: Material for MkDocs' banner about MkDocs 2 and its own end of life (May 2027), printed on
# every build; docs/contributing.md says so once
docs: $(STAMP) ## build the documentation site from docs/ into site/ (MkDocs, strict: a broken link fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP) ## run the benchmarks recorded in docs/benchmarks.md
	$(BIN)/python bench/tracking_overhead.py
	$(BIN)/python bench/mnist1d_balanced.py
	$(BIN)/python bench/sweep_overhead.py
	$(BIN)/python bench/parallel.py
	$(BIN)/python bench/coordination.py --rounds 12
	$(BIN)/python bench/run_wall.py --repeats 3
	$(BIN)/python bench/pruning.py
	$(BIN)/python bench/tricks_mnist1d.py --trials 30 --seeds 5
	bash bench/tournament.sh
	$(BIN)/python bench/ui_start.py
	$(BIN)/python bench/image_folder.py

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

clean: ## remove the local state (mlruns/, outputs/) and caches, keep .venv
	rm -rf outputs multirun reports site .pytest_cache .mypy_cache .ruff_cache
	find mlruns -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +
