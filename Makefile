# Set-up and entry points. `make run` and `make test` each do everything on a fresh machine.
# torch: take a locally provided wheel first (pip's find-links, e.g. a CPU build); where there is
# none, that step fails harmlessly and `pip install -e .` gets torch from the index as usual.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install trackers run test profile floor peer compare-optimizers world-validation world-weights

# --no-compile: pip would byte-compile every module of every package (torch's tens of thousands) at install, about
# half the install's time; bench/compile_imports.py then compiles the ~5,000 that runs and tests import, once, also
# where PYTHONDONTWRITEBYTECODE is set and Python would otherwise compile them again in every process (docs/performance.md).
$(BIN)/harness: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	-$(BIN)/pip install -q --no-compile --no-index --no-deps torch
	$(BIN)/pip install -q --no-compile -e ".[test]"
	$(BIN)/python bench/compile_imports.py
	touch $(BIN)/harness

install: $(BIN)/harness

# The trackers (W&B, MLflow: docs/tracking.md) are extras, left out of the default install; tests/test_trackers.py
# skips their checks without them. CI installs them (about 15 s and 200 MB) so those checks run there.
trackers: install
	$(BIN)/pip install -q --no-compile -e ".[test,wandb,mlflow]"

run: install
	$(BIN)/harness run experiments/instructgpt.toml

test: install
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

# Where the default run's time goes, stage by stage and phase by phase (bench/pipeline_profile.py), written
# into docs/performance.md between its profile markers. Every stage runs fresh (~8 minutes on 2 quiet cores).
profile: install
	$(BIN)/python bench/pipeline_profile.py experiments/instructgpt.toml --doc docs/performance.md --label now

# Each stage's FLOPs and its floor at the peak matmul FLOP/s of these cores (docs/performance.md). The FLOP
# counter slows every operator, so the policy stage runs 12 of its 120 steps (the same work every step).
floor: install
	$(BIN)/python bench/pipeline_profile.py experiments/instructgpt.toml --flops --set optimizer.ppo.steps=12 \
		--doc docs/performance.md --label floor

# harness GRPO and RLOO against trl's trainers, samples/s in paired rounds (~10 minutes), into docs/performance.md.
peer: install
	$(BIN)/python bench/peer_throughput.py --doc docs/performance.md

# experiments/compare-optimizers.toml over its 3 seeds (its cost is in the block it writes; resumable: rerun to continue), its
# ranking and compact table written into README.md between its compare:optimizers markers.
compare-optimizers: install
	$(BIN)/python bench/comparison_block.py experiments/compare-optimizers.toml --doc README.md --label optimizers

# The world's design (docs/world.md): 4 is the default world's; `make world-weights world-validation
# WORLD_DESIGN=5` builds, ships and validates design 5 (no chat dialogues in the base corpus).
WORLD_DESIGN ?= 4
SHIP_SEEDS_4 := 0,1,2
SHIP_SEEDS_5 := 0,1,2,3,4
SHIP_SEEDS ?= $(SHIP_SEEDS_$(WORLD_DESIGN))

# The embedded world's validation (docs/world.md): rows V1–V9 under issue 25's rules on seeds 0-4, written
# into README.md between its world-validation markers; each design's runs in their own run store. Hours on
# 2 cores; resumable (rerun to continue).
world-validation: install
	$(BIN)/harness world validate --seeds 0,1,2,3,4 --design $(WORLD_DESIGN) --output runs/world-design$(WORLD_DESIGN) \
		--no-progress --readme README.md

# Rebuild the shipped base models (harness_builtins/worlds/embedded/weights/: design 4's tiny-s0..2,
# design 5's tiny-d5-s0..4) from their recipe: about 9 minutes per seed on 2 cores. Needed after any
# change to the corpus or the model spec (tests/test_world.py fails until then).
world-weights: install
	$(BIN)/harness world build --ship --design $(WORLD_DESIGN) --seed $(SHIP_SEEDS)
