# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv first. torch is pinned to the CPU wheel by constraints.txt (an unpinned torch pulls a
# multi-GB CUDA build); on a GPU machine install the CUDA torch of the same version before `make install`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install test test-fast lint demo clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check ragcun jobs tune tests
	$(PY) -m pytest -q -p no:cacheprovider --durations=10

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check ragcun jobs tune tests

demo: $(STAMP)
	$(PY) jobs/prepare_data.py --beir_dir data/scifact --beir_split train --split 0.9 0.1 0 \
		--beir_eval_split test --mine_negatives --output_dir $(DEMO_DIR)/data
	$(PY) jobs/evaluate.py --base_model sentence-transformers/all-MiniLM-L6-v2 --beir_dir data/scifact \
		--split test --distance cosine --output_file $(DEMO_DIR)/results/base_minilm_cosine.json
	$(PY) jobs/build_index.py --corpus data/scifact --base_model sentence-transformers/all-MiniLM-L6-v2 \
		--distance cosine --output_dir $(DEMO_DIR)/scifact_index
	$(PY) jobs/serve_query.py --index_dir $(DEMO_DIR)/scifact_index --output_file $(DEMO_DIR)/results/serve_answers.json

clean:
	rm -rf $(VENV) runs .pytest_cache
