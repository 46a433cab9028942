# Every target bootstraps .venv on a fresh machine (only Python and pip needed)
# and is a no-op install when pyproject.toml has not changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, on its own: with pip pointed at the CPU wheels (PIP_INDEX_URL or
	# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu, or PIP_FIND_LINKS for a
	# local wheel) the [hf] extra then does not pull a multi-GB CUDA build; without
	# that it is PyPI's default build for the platform.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[hf,serve,ray,test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m proctor.demo

# Each benchmark prints what it compares (against the limit or a naive baseline in the same run).
BENCHMARKS := bench/api_throughput.py bench/api_adaptive.py bench/api_batch.py bench/engine_parallel.py bench/hf_multiple_choice.py bench/serve_throughput.py bench/math_scoring.py bench/humaneval_sandbox.py bench/hf_many_subjects.py bench/hf_cli_generation.py

bench: $(STAMP)
	for b in $(BENCHMARKS); do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) outputs .pytest_cache
