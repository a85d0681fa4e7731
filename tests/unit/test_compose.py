"""docker-compose.yml and the Dockerfile, validated offline (there is no Docker engine here).

Checks the compose file's structure (images/builds, depends_on targets and conditions,
healthchecks, ports, commands), that the commands match the ``kestrel`` CLI's options when the
CLI is importable, and that the Dockerfile copies paths that exist and are not dockerignored and
installs every package pyproject.toml declares. ``docker compose config`` runs too where the
compose plugin exists.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = YAML(typ="safe", pure=True).load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    buffer = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        joined.append(buffer + line)
        buffer = ""
    result = []
    for line in joined:
        instruction, _, args = line.partition(" ")
        result.append((instruction.upper(), args.strip()))
    return result


def _dockerignore_patterns() -> list[str]:
    if not DOCKERIGNORE.exists():
        return []
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _ignored(rel: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if pattern.startswith("!"):
            continue
        if fnmatch.fnmatch(rel, pattern) or rel == pattern or rel.startswith(pattern + "/"):
            return True
        if pattern.startswith("**/") and fnmatch.fnmatch(Path(rel).name, pattern[3:]):
            return True
    return False


def test_expected_services(services: dict[str, dict[str, Any]]) -> None:
    assert {"postgres", "redis", "controlplane", "worker"} <= set(services)


def test_every_service_has_image_or_build(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        build = service.get("build")
        if build is not None:
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: build context {context} missing"
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file(), f"{name}: {dockerfile} missing"


def test_official_images_for_data_services(services: dict[str, dict[str, Any]]) -> None:
    assert re.fullmatch(r"postgres:\d+[\w.-]*", services["postgres"]["image"])
    assert re.fullmatch(r"redis:\d+[\w.-]*", services["redis"]["image"])


def test_depends_on_targets_exist_and_wait_for_health(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        targets = depends if isinstance(depends, list) else list(depends)
        for target in targets:
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name
            if isinstance(depends, dict):
                condition = depends[target].get("condition", "service_started")
                assert condition in {"service_started", "service_healthy", "service_completed_successfully"}
                if condition == "service_healthy":
                    assert "healthcheck" in services[target], (
                        f"{name} waits for {target}'s health: none defined"
                    )
    assert set(services["controlplane"]["depends_on"]) == {"postgres", "redis"}
    assert services["worker"]["depends_on"]["controlplane"]["condition"] == "service_healthy"


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in ("postgres", "redis", "controlplane"):
        check = services[name]["healthcheck"]
        test = check["test"]
        assert isinstance(test, list) and test[0] in {"CMD", "CMD-SHELL"}, name
        assert len(test) >= 2


def test_ports_are_sane(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            parts = str(port).split(":")
            assert 2 <= len(parts) <= 3, f"{name}: port {port!r} should be [ip:]host:container"
            host, container = int(parts[-2]), int(parts[-1].split("/")[0])
            assert 0 < host < 65536 and 0 < container < 65536
    assert "6570:6570" in services["controlplane"]["ports"]
    assert "ports" not in services["worker"], "workers scale; a published port would collide"


def _flag(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing in {command}"
    return command[command.index(flag) + 1]


def test_commands_wire_the_services_together(services: dict[str, dict[str, Any]]) -> None:
    cp = services["controlplane"]["command"]
    assert cp[:3] == ["kestrel", "server", "standalone"]
    db = _flag(cp, "--database-url")
    assert db.startswith("postgresql+psycopg://") and "@postgres:5432/" in db
    env = services["postgres"]["environment"]
    assert f"{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/{env['POSTGRES_DB']}" in db
    assert _flag(cp, "--redis-url").startswith("redis://redis:6379")
    port = int(_flag(cp, "--port"))
    assert services["controlplane"]["environment"]["KESTREL_HOST"] == "0.0.0.0"

    worker = services["worker"]["command"]
    assert worker[:2] == ["kestrel", "worker"]
    assert _flag(worker, "--server") == f"controlplane:{port}"
    assert int(_flag(worker, "--concurrency")) >= 1
    assert services["worker"].get("deploy", {}).get("replicas", 1) >= 1


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} not declared"


def test_dockerfile_base_user_and_install() -> None:
    instructions = _dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [args for ins, args in instructions if ins == "USER"]
    assert users and users[-1] not in {"root", "0"}, "the image must run as a non-root user"
    runs = " ".join(args for ins, args in instructions if ins == "RUN")
    assert re.search(r"pip install (--no-cache-dir )?\.", runs)
    exposed = [args for ins, args in instructions if ins == "EXPOSE"]
    assert exposed == ["6570"]


def test_dockerfile_copies_existing_paths_that_are_not_ignored() -> None:
    patterns = _dockerignore_patterns()
    copied: list[str] = []
    for instruction, args in _dockerfile_instructions():
        if instruction not in {"COPY", "ADD"}:
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repo"
            assert not _ignored(source, patterns), f"{source} is excluded by .dockerignore"
            copied.append(source.rstrip("/"))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "pyproject.toml" in copied
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str):
        assert readme in copied, "setuptools needs the readme file to build"
    for include in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = include.rstrip("*")
        if (REPO / package).is_dir():
            assert package in copied, f"package {package} is not copied into the image"


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = _dockerignore_patterns()
    for path in (".git", ".venv", ".kestrel"):
        assert _ignored(path, patterns), path


def _cli_command(path: list[str]) -> Any:
    try:
        from controlplane.cli import app
    except ImportError as exc:
        pytest.skip(f"controlplane.cli is not importable yet ({exc})")
    import typer

    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def _options(command: Any) -> set[str]:
    return {opt for param in command.params for opt in getattr(param, "opts", [])}


def test_compose_commands_match_the_cli(services: dict[str, dict[str, Any]]) -> None:
    for service in ("controlplane", "worker"):
        argv = services[service]["command"]
        assert argv[0] == "kestrel"
        words = [a for a in argv[1:] if not a.startswith("-")]
        path = words[:2] if words[0] == "server" else words[:1]
        options = _options(_cli_command(path))
        for flag in (a for a in argv if a.startswith("--")):
            assert flag in options, f"`kestrel {' '.join(path)}` has no option {flag} (has {sorted(options)})"


def test_docker_compose_config_when_available() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed here; the checks above ran instead")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
