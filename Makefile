# Switchyard: `make demo` runs the embedded stack with a demo workload; `make test` runs the suite;
# `make bench` runs the benchmarks (BENCH_QUICK=1: a short smoke run; BENCH_PROFILE=1: py-spy).
# All set everything up first (virtualenv, packages, generated code, model artifacts).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup bytecode demo test chaos bench up down status proto proto-baseline models docs helm-schema pack-schema openapi lint clean

# Setup's independent steps run side by side: the Debian tools download while pip installs,
# the models train while the bytecode compiles. A fresh machine spends most of setup waiting
# on downloads.
MAKEFLAGS += --jobs=3

# Debian tools the tests drive for real (promtool checks the alert rules; Playwright drives
# chromium through the review console). Installed only when missing; needs root (as on CI and
# the dev machines), as apt always does.
CHROMIUM     := /usr/bin/chromium
DEBIAN_TOOLS := /usr/bin/promtool $(CHROMIUM)

setup: $(STAMP) models bytecode $(DEBIAN_TOOLS)

# The project's own modules compiled ahead, as pip compiles the packages it installs: where
# PYTHONDONTWRITEBYTECODE is set (as on the dev machines), every service process and every
# CLI call would compile them again, a third of a service's start-up CPU. Files already
# compiled are skipped; a module edited later is compiled in memory until the next setup.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q -j 0 switchyard services switchyard_packs client bench chaos

# One apt run for both tools (two at once would fight over dpkg's lock), each package only
# when its tool is missing.
$(DEBIAN_TOOLS) &:
	apt-get update -qq
	test -x /usr/bin/promtool || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
	test -x $(CHROMIUM) || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

$(STAMP): pyproject.toml client/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	# not --quiet: the big download shows pip's own progress bars (on a terminal). With the
	# client SDK (client/), a distribution of its own, editable so the tests import it: one
	# install, so pip resolves (and checks what is installed) once, not twice.
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev,stack]' -e client
	@touch $@

# The demo needs neither promtool nor chromium (only the tests drive them).
demo: $(STAMP) models bytecode
	$(BIN)/switchyard demo --with-stack

test: setup
	$(BIN)/python -m pytest

# The reliability suite, full version (the short one runs in `make test`): several thousand
# tasks through service kills, a Triton outage, a failing downstream, a PostgreSQL stop, an
# escalation storm and a broker restart, then the invariants. CHAOS_ARGS="--tasks 5000 --seed 3" to vary it.
chaos: setup
	$(BIN)/python -m chaos $(CHAOS_ARGS)

# End to end (vs a pass-through baseline), ingest (vs a bare gRPC server), decision (batching)
# and scaling (1 vs 2 replicas), in sequence on one embedded stack: tables on stdout, JSON in
# bench/results/. BENCH_QUICK=1 for a short smoke run, BENCH_PROFILE=1 to py-spy the services.
bench: setup
	$(BIN)/python -m bench $(if $(filter-out 0,$(BENCH_QUICK)),--quick) $(if $(filter-out 0,$(BENCH_PROFILE)),--profile)

# Like the demo, the stack needs neither promtool nor chromium.
up: $(STAMP) models bytecode
	$(BIN)/switchyard up

down:
	$(BIN)/switchyard down

status:
	$(BIN)/switchyard status

proto: $(STAMP)
	$(BIN)/python -m switchyard._tools.protogen

models: $(STAMP)
	$(BIN)/python -m services.decision.training --if-missing

docs: $(STAMP)
	$(BIN)/switchyard settings --markdown > docs/settings.md

# The chart's config.settings/config.secrets schema, generated from switchyard/_settings.py.
helm-schema: $(STAMP)
	$(BIN)/python -m switchyard._tools.helmschema

# docs/pack.schema.json (editor completion for pack.yaml), generated from switchyard.packs.
pack-schema: $(STAMP)
	$(BIN)/python -m switchyard._tools.packschema

# docs/openapi.json (the REST gateway's OpenAPI 3.1 document), generated from the protos.
openapi: $(STAMP)
	$(BIN)/python -m services.ingest.openapi

# The released v1 contract that `buf breaking` compares against. Rebuild it only when a
# release ships the current protos, never to make a breaking change pass.
proto-baseline: $(STAMP)
	$(BIN)/buf build protos -o protos/baseline/switchyard-v1.binpb

lint: $(STAMP)
	$(BIN)/buf lint protos
	$(BIN)/buf breaking protos --against protos/baseline/switchyard-v1.binpb

clean:
	rm -rf $(VENV) .switchyard build *.egg-info
