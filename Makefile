# SceneTG — every target creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

VIDEOS ?= data/videos
OUT    ?= out/dataset
CONFIG ?= pipelines/build.yaml
EVAL_CONFIG ?= pipelines/eval.yaml
TRAIN_CONFIG ?= pipelines/train.yaml
ENGINE ?= local
DEMO_OUT ?= demo_out

export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup test test-fast demo build train eval bench lint clean

setup: $(STAMP)

# torch first, pinned to the build whose torchvision matches (a CPU-only torch breaks torchvision);
# then this package editable with every extra (a user's `pip install scenetg` gets the core only).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev,ray,openai,train]'
	touch $(STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/pytest -q

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -m "not slow"

demo: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/scenetg demo --out $(DEMO_OUT)

build: $(STAMP)
	$(BIN)/scenetg build --videos $(VIDEOS) --out $(OUT) --config $(CONFIG) --engine $(ENGINE) --resume

train: $(STAMP)
	$(BIN)/scenetg train --config $(TRAIN_CONFIG)

eval: $(STAMP)
	$(BIN)/scenetg eval-suite --config $(EVAL_CONFIG)

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run_all.py --out docs/BENCHMARKS.md

lint: $(STAMP)
	$(BIN)/ruff check scenetg tests benchmarks

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache
