# rnnserve: `make serve` to serve the default models, `make test` to run every test.
SST2_SOURCE ?= GLUE benchmark SST-2 (Socher et al. 2013; Wang et al. 2018), https://gluebenchmark.com/tasks
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data/sst2
MODELS ?= models
HOST ?= 127.0.0.1
PORT ?= 8000
CHECKPOINTS ?= checkpoints

.PHONY: serve test lint format models bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Serving needs only onnxruntime and the web stack (no torch).
$(VENV)/.serve: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# Everything: training (torch), export, tests and linters.
$(VENV)/.all: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[train,dev]'
	touch $@ $(VENV)/.serve

serve: $(VENV)/.serve
	$(BIN)/rnnserve serve --model-repository $(MODELS) --host $(HOST) --port $(PORT)

lint: $(VENV)/.all
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.all
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest -q

# Rebuild the default models from SST-2 with fixed seeds; each run publishes new versions.
models: $(VENV)/.all
	$(BIN)/rnnserve train --data $(DATA) --out $(CHECKPOINTS)/sst2-lstm --cell lstm \
		--labels negative,positive --dataset sst2 --source "$(SST2_SOURCE)"
	$(BIN)/rnnserve export $(CHECKPOINTS)/sst2-lstm/checkpoint.pt --name sst2-lstm \
		--repository $(MODELS) --description "SST-2 sentiment, BiLSTM with additive attention"
	$(BIN)/rnnserve export $(CHECKPOINTS)/sst2-lstm/checkpoint.pt --name sst2-lstm-int8 \
		--repository $(MODELS) --quantize int8 \
		--description "SST-2 sentiment, BiLSTM with additive attention, int8 weights"
	$(BIN)/rnnserve train --data $(DATA) --out $(CHECKPOINTS)/sst2-gru --cell gru \
		--labels negative,positive --dataset sst2 --source "$(SST2_SOURCE)"
	$(BIN)/rnnserve export $(CHECKPOINTS)/sst2-gru/checkpoint.pt --name sst2-gru \
		--repository $(MODELS) --description "SST-2 sentiment, BiGRU with additive attention"

bench: $(VENV)/.all
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(CHECKPOINTS)
