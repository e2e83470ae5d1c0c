# Two commands on a fresh machine:  make run  (the whole workflow, embedded configuration)  and  make test.
# The virtual environment lives in .venv (ignored) and is rebuilt only when requirements.txt or
# pyproject.toml change (a stamp file keyed by their hash).
PYTHON ?= python3
VENV := .venv
REQ_HASH := $(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
# Determinism and a quiet CPU run: one BLAS thread per job (Snakemake runs jobs in parallel).
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MLFLOW_ENABLE_ASYNC_LOGGING := false
# `make test` runs everything (learnability, workflow, DVC, SLURM, browser, distributed); `make test-quick` skips
# the tests that train for tens of seconds or start services.
PYTEST_ARGS ?=

.PHONY: setup run release test test-quick dry-run paper-dry-run lint bench bench-scale rehearsal clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: pip takes the wheels already on disk (a bare torch would download GBs).
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

# check settings and dvc.yaml, clear a killed run's stale Snakemake locks, then `dvc repro` (docs/provenance.md)
run: setup
	$(BIN)/python workflow_scripts/run_workflow.py

# push every output to the DVC remote REMOTE (default: the configured default) and commit dvc.lock
REMOTE ?=
release: setup
	$(BIN)/python workflow_scripts/release.py $(if $(REMOTE),--remote $(REMOTE))

test: setup
	$(BIN)/python -m pytest -q --durations=30 $(PYTEST_ARGS)

test-quick: setup
	$(BIN)/python -m pytest -q -m "not slow and not slurm and not browser and not distributed" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests workflow_scripts benchmarks
	$(BIN)/snakemake --lint

dry-run: setup
	$(BIN)/snakemake --profile profiles/local -n

paper-dry-run: setup
	$(BIN)/snakemake --profile profiles/local -n --configfile configs/paper.yaml --config model="{'path': '/models/Qwen2.5-VL-7B-Instruct'}"

bench: setup
	$(BIN)/python benchmarks/bench_distortions.py
	$(BIN)/python benchmarks/bench_pd_reward.py
	$(BIN)/python benchmarks/bench_phash.py

# Issue 13: peak RSS and time per item of the data and evaluation jobs at N and 4N full-size items (minutes).
bench-scale: setup
	nice -n 5 $(BIN)/python benchmarks/bench_scale.py $(BENCH_SCALE_ARGS)

# Outputs and local state only: no tracked file (dvc.lock is the last release; `git checkout dvc.lock` and
# `dvc pull` bring it back on disk). The DVC cache stays (`dvc gc` prunes it).
clean:
	rm -rf work models results reports logs .snakemake mlflow.db mlruns mlartifacts

# Paper-shape rehearsal on the CPU (docs/rehearsal.md): N and 4N full-size photos, both stages, two processes.
REHEARSAL_WORK ?= work/rehearsal
REHEARSAL_N ?= 2
REHEARSAL_STEPS ?= 1
REHEARSAL_LAUNCH = $(BIN)/python -m accelerate.commands.launch --config_file configs/accelerate/cpu.yaml --num_processes 2
rehearsal: setup
	$(BIN)/python benchmarks/bench_rehearsal.py prepare --work $(REHEARSAL_WORK)/N --images $(REHEARSAL_N)
	$(BIN)/python benchmarks/bench_rehearsal.py prepare --work $(REHEARSAL_WORK)/4N --images $$(( 4 * $(REHEARSAL_N) ))
	for stage in stage1 stage2; do $(REHEARSAL_LAUNCH) benchmarks/bench_rehearsal.py train --work $(REHEARSAL_WORK)/N --stage $$stage --tag N --steps $(REHEARSAL_STEPS) || exit 1; done
	$(REHEARSAL_LAUNCH) benchmarks/bench_rehearsal.py train --work $(REHEARSAL_WORK)/4N --stage stage2 --tag 4N --steps $(REHEARSAL_STEPS)
	$(BIN)/python benchmarks/bench_rehearsal.py pd-memory --work $(REHEARSAL_WORK)/N
	mkdir -p $(REHEARSAL_WORK)/all/figures && cp $(REHEARSAL_WORK)/N/figures/*.json $(REHEARSAL_WORK)/4N/figures/*.json $(REHEARSAL_WORK)/all/figures/
	$(BIN)/python benchmarks/bench_rehearsal.py report --work $(REHEARSAL_WORK)/all
