# rnnserve container images.
#
#   docker build -t rnnserve .                           # runtime (default): serves models/
#   docker build --target trainer -t rnnserve-trainer .  # torch (CPU) for train and export
#
# The runtime image holds onnxruntime and the web stack only: no torch, no compiler.
# Settings are RNNSERVE_* environment variables (see README.md); the model repository is
# /models, baked in from models/, and a folder mounted there replaces it:
#
#   docker run --rm -p 8000:8000 -p 8001:8001 -v "$PWD/models:/models:ro" rnnserve
#
# GPU serving (onnxruntime-gpu on a CUDA base image) is Dockerfile.gpu.

# --- builder: a virtual environment with rnnserve and its serving dependencies ---------------
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, read from pyproject.toml alone, so a change to the code reuses this layer;
# with the s3 extra (boto3), so the image reads a model repository on object storage.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); \
print('\n'.join(p['project']['dependencies'] + p['project']['optional-dependencies']['s3']))" \
    > requirements.txt \
    && pip install --no-cache-dir --no-compile --requirement requirements.txt

COPY README.md ./
COPY contract ./contract
COPY model_src ./model_src
COPY export ./export
COPY service ./service
# Not editable, no extras: the `train` extra (torch) never enters the runtime image.
RUN pip install --no-cache-dir --no-compile --no-deps . \
    && python -c "import service.app, onnxruntime; print('onnxruntime', onnxruntime.__version__)"

# --- venv: the builder's environment, trimmed to what serving runs ---------------------------
# No pip or setuptools, no test suites, no onnxruntime offline tooling (quantization and
# transformer optimisers: export's business), no bytecode caches (-40 MB; imports compile
# in memory, about 0.3 s more per start).
FROM builder AS venv
RUN python -m pip uninstall --yes --quiet pip setuptools \
    && find /opt/venv -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} + \
    && rm -rf /opt/venv/lib/python3*/site-packages/onnxruntime/quantization \
              /opt/venv/lib/python3*/site-packages/onnxruntime/tools \
              /opt/venv/lib/python3*/site-packages/onnxruntime/transformers \
    && python -c "import service.app, uvloop, httptools"

# --- trainer: `rnnserve train` and `rnnserve export` (torch, CPU build) -----------------------
# torch comes from the PyTorch CPU index by default: PyPI's torch for Linux is a CUDA build
# of several GB. For a CUDA build, pass --build-arg TORCH_INDEX_URL=https://pypi.org/simple.
#
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/work" rnnserve-trainer \
#     train --data data/sst2 --out checkpoints/sst2-gru --cell gru
FROM builder AS trainer

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
# torch is already there, so this adds only the other training extras (onnx, tqdm, ...).
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); \
print('\n'.join(p['project']['optional-dependencies']['train']))" > train-requirements.txt \
    && pip install --no-cache-dir --requirement train-requirements.txt \
    && /usr/sbin/groupadd --system --gid 10001 trainer \
    && /usr/sbin/useradd --system --uid 10001 --gid 10001 --home-dir /work \
       --shell /usr/sbin/nologin trainer
ENV MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /work
USER 10001:10001
ENTRYPOINT ["rnnserve"]
CMD ["train", "--help"]

# --- runtime (the default target) -------------------------------------------------------------
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="rnnserve" \
      org.opencontainers.image.description="LSTM/GRU sequence models served over HTTP on onnxruntime" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN /usr/sbin/groupadd --system --gid 10001 rnnserve \
    && /usr/sbin/useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin rnnserve

COPY --from=venv /opt/venv /opt/venv
# Owned by root and read-only for the server: models are mounted or baked in, never written.
COPY models /models

# ORT_DISABLE_TELEMETRY: onnxruntime would try to keep a telemetry device ID on disk.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORT_DISABLE_TELEMETRY=1 \
    RNNSERVE_MODEL_REPOSITORY=/models \
    RNNSERVE_HOST=0.0.0.0 \
    RNNSERVE_PORT=8000 \
    RNNSERVE_GRPC_PORT=8001

USER 10001:10001
# HTTP (V1, V2, metrics) and the Open Inference Protocol over gRPC.
EXPOSE 8000 8001

# Ready = every model loaded and answered a warm-up inference. urllib raises on a 503.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('RNNSERVE_PORT', '8000'), timeout=4)"]

# Exec form: the server is PID 1 and gets SIGTERM itself, finishes the requests in flight and
# exits 0. Arguments after the image name are flags of `rnnserve serve` (e.g. --workers 2).
ENTRYPOINT ["rnnserve", "serve"]
