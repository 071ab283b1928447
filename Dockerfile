# syntax=docker/dockerfile:1
#
# The Switchyard image: every service is a subcommand of one entry point.
#
#   docker build -t switchyard:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp switchyard:0.1.0 run ingest
#
# Stage 1 installs the package into a virtualenv and trains the models (the weights are built
# here, not downloaded); stage 2 is python:3.11-slim with that virtualenv and the model
# repository, running as uid 10001 with nothing to write outside /tmp.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv \
 && pip install --upgrade pip setuptools wheel

WORKDIR /src
# The package without extras: no `stack` (the embedded broker, PostgreSQL and Triton wheels;
# the chart points the services at external servers) and no `dev`. The OTLP trace exporter
# the production values switch on is a base dependency.
COPY pyproject.toml README.md ./
COPY switchyard ./switchyard
COPY services ./services
RUN pip install . \
 && python -m compileall -q /opt/venv/lib

# Train the document_router and invoice_risk models into the Triton model repository.
COPY models ./models
RUN python -m services.decision.training --data-dir models/data --repository models/repository \
 && find models/repository -name __pycache__ -type d -prune -exec rm -rf {} + \
 && test -f models/repository/document_router/1/weights.npz \
 && test -f models/repository/invoice_risk/1/weights.npz

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
EXPOSE 50051 50052 50053 50054 8080 9101 9102 9103 9104

ENTRYPOINT ["switchyard"]
CMD ["--help"]
