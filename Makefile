# Two commands do all set-up on a fresh machine (see README):
#   make demo    -- create/reuse .venv, install rusir, run the main job on the embedded generator
#                   (writes runs/demo/, untracked)
#   make test    -- create/reuse .venv, install rusir with test extras, run every test (docs build included)
# On purpose only:
#   make figures -- regenerate the committed figures/demo_* and demo_metrics.* (the model card quotes them)
#   make docs    -- build the documentation site into runs/site/ (strict: warnings are errors)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rusir-installed
# Idle OpenMP threads sleep rather than spin (spinning threads of concurrent processes, e.g.
# notebook kernels under test, slow each other down by orders of magnitude on 2 cores).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo figures docs test clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,notebooks,metrics,train]'
	$(PY) -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m rusir demo --out runs/demo

figures: $(STAMP)
	$(PY) -m rusir demo --out figures

docs: $(STAMP)
	$(PY) -m mkdocs build --strict

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

clean-venv:
	rm -rf $(VENV)
