"""compose.yaml (the embedded stack in one container, for macOS and Windows) read offline:
what it builds exists in the Dockerfile, what it runs exists in the CLI, the settings it
names are real, and it publishes only on the host's loopback, at the default ports. Also the
make target of the same stack on Linux, which must need no more than `make demo` installed.

Whether the image builds and the stack in it answers is checked by building and running it
(see the README's Docker Compose section); these checks need no container engine.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from switchyard._settings import Settings, env_var
from switchyard.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
KNOWN_SETTINGS = {env_var(name) for name in Settings.__dataclass_fields__}


def dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"FROM\s+\S+\s+AS\s+(\S+)", line, flags=re.IGNORECASE)
        if match:
            current = stages.setdefault(match.group(1), [])
        if current is not None:
            current.append(line)
    return stages


def stage_env(instructions: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in instructions:
        if line.startswith("ENV "):
            env.update(part.split("=", 1) for part in shlex.split(line[4:]))
    return env


def stage_json(instructions: list[str], keyword: str) -> list[str]:
    (line,) = [i for i in instructions if i.startswith(keyword + " ")]
    return yaml.safe_load(line[len(keyword) + 1:])


def the_service() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert set(compose["services"]) == {"switchyard"}
    return compose["services"]["switchyard"]


def test_compose_builds_the_dev_target_and_a_plain_build_stays_production() -> None:
    service = the_service()
    assert service["build"] == {"context": ".", "target": "dev"}
    # pgserver (the stack extra's PostgreSQL) publishes x86-64 Linux wheels only: on an arm64
    # host the image must be built for amd64, or pip would try to compile PostgreSQL
    assert service["platform"] == "linux/amd64"
    stages = dockerfile_stages()
    assert "dev" in stages
    # `docker build .` (the chart's image) builds the last stage: the production runtime,
    # without the embedded stack's wheels
    assert list(stages)[-1] == "runtime"
    assert not any("stack" in line for line in stages["runtime"] + stages["builder"])
    assert any(re.search(r"pip install '\.\[stack\]'", line) for line in stages["dev-builder"])
    assert "FROM builder AS dev-builder" in stages["dev-builder"]
    assert "COPY --from=dev-builder /opt/venv /opt/venv" in stages["dev"]


def test_compose_runs_real_commands_of_the_cli() -> None:
    service = the_service()
    dev = dockerfile_stages()["dev"]
    entrypoint = stage_json(dev, "ENTRYPOINT")
    assert entrypoint == ["switchyard"]
    parser = build_parser()
    command = service["command"]
    assert command == stage_json(dev, "CMD") == ["up"]
    assert parser.parse_args(command).command == "up"
    health = service["healthcheck"]["test"]
    assert health[0] == "CMD" and health[1] == "switchyard"
    assert parser.parse_args(health[2:]).command == "status"
    assert service["init"] is True  # SIGTERM reaches `switchyard up`; orphans are reaped


def test_compose_publishes_the_default_ports_on_loopback_only() -> None:
    service = the_service()
    defaults = Settings()
    expected = {defaults.ingest_grpc_port, defaults.decision_grpc_port,
                defaults.executor_grpc_port, defaults.review_grpc_port,
                defaults.review_web_port, defaults.ingest_rest_port}
    published = set()
    for mapping in service["ports"]:
        host, host_port, container_port = str(mapping).split(":")
        assert host == "127.0.0.1", mapping
        assert host_port == container_port, mapping  # the README's ports, unchanged
        published.add(int(container_port))
    assert published == expected
    exposed = {int(p) for line in dockerfile_stages()["dev"] if line.startswith("EXPOSE ")
               for p in line.split()[1:]}
    assert published == exposed


def test_settings_compose_and_the_dev_image_set_are_real() -> None:
    service = the_service()
    env = stage_env(dockerfile_stages()["dev"])
    named = {k for k in env if k.startswith("SWITCHYARD_")}
    named |= {str(k) for k in (service.get("environment") or {})}
    assert named and named <= KNOWN_SETTINGS, named - KNOWN_SETTINGS
    # the servers listen on the container's interfaces so the published ports reach them;
    # the state volume is where `switchyard up` keeps PostgreSQL's data
    assert env["SWITCHYARD_BIND_HOST"] == "0.0.0.0"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert mounts[env["SWITCHYARD_STATE_DIR"]] == "switchyard-state"
    assert "switchyard-state" in yaml.safe_load(COMPOSE.read_text())["volumes"]


def test_the_readme_compose_path_names_files_the_container_sees() -> None:
    service = the_service()
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    examples = (ROOT / mounts["/examples"]).resolve()
    assert examples == ROOT / "docs" / "examples"
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Docker Compose", 1)[1].split("\n## ", 1)[0]
    exec_lines = [line for line in section.splitlines()
                  if line.startswith("docker compose exec switchyard switchyard ")]
    assert exec_lines
    parser = build_parser()
    for line in exec_lines:
        argv = shlex.split(line.replace("TASK_ID", "t-1"), comments=True)[5:]
        args = parser.parse_args(argv)
        for path in getattr(args, "files", []) or []:
            assert path.startswith("/examples/"), path
            assert (examples / path.removeprefix("/examples/")).is_file(), path


def test_make_up_needs_only_what_make_demo_installs() -> None:
    """`make up` starts the stack the README's first screen uses: like `make demo` it needs
    the virtualenv and the models, never `setup`'s Debian tools (apt, root)."""
    makefile = (ROOT / "Makefile").read_text()
    rules = dict(re.findall(r"^(demo|up):[ \t]*(.*)$", makefile, flags=re.M))
    assert rules["up"].split() == rules["demo"].split() == ["$(STAMP)", "models", "bytecode"]
