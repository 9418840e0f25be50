"""services/Dockerfile (one file, a stage per service): static checks, and the install recipe of
each image run for real."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from deploy_helpers import ROOT, SERVICES, run, tool

UV_IMAGE = re.compile(r"^ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+$")
PYTHON_IMAGE = re.compile(r"^python:3\.1[1-9](\.\d+)?-slim(-[a-z]+)?$")


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(path: Path) -> list[Stage]:
    """Instructions per stage (line continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            stages.append(Stage(words[0], words[2] if len(words) > 2 else None))
        else:
            assert stages, f"{path}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


DOCKERFILE = ROOT / "services" / "Dockerfile"


def stages() -> dict[str, Stage]:
    """The stages of services/Dockerfile by name."""
    parsed = parse(DOCKERFILE)
    assert all(stage.name for stage in parsed), "every stage is named"
    return {str(stage.name): stage for stage in parsed}


def chain(name: str) -> list[Stage]:
    """A stage and the stages it is built FROM, base first."""
    by_name = stages()
    out = [by_name[name]]
    while out[0].image in by_name:
        out.insert(0, by_name[out[0].image])
    return out


def substitute(args: str, service: str) -> str:
    """What BuildKit makes of `$SERVICE` / `${SERVICE}` with --build-arg SERVICE=<service>."""
    return args.replace("${SERVICE}", service).replace("$SERVICE", service)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form: {args}"
    return value


def test_one_dockerfile_for_the_three_services() -> None:
    assert sorted(p.parent.name for p in ROOT.glob("services/*/Dockerfile")) == [], (
        "one file: services/Dockerfile"
    )
    by_name = stages()
    assert set(SERVICES) <= set(by_name)
    uv, builder, runtime = by_name["uv"], by_name["builder"], by_name["runtime"]
    for stage in by_name.values():
        assert "$" not in stage.image, "literal, pinned image references (scanners cannot resolve ARGs)"
        if stage.image not in by_name:
            assert ":" in stage.image and not stage.image.endswith(":latest"), stage.image
    assert UV_IMAGE.match(uv.image), uv.image
    assert PYTHON_IMAGE.match(builder.image), builder.image
    assert runtime.image == builder.image, "the venv's python must exist at the same path in the runtime"
    assert DOCKERFILE.read_text(encoding="utf-8").startswith("# syntax=docker/dockerfile:1.")

    # builder: uv from the official image, frozen non-editable install of the service named by SERVICE
    assert builder.all("ARG") == ["SERVICE"]
    assert any(c.startswith(f"--from={uv.name} /uv ") for c in builder.all("COPY"))
    syncs = [r for r in builder.all("RUN") if "uv sync" in r]
    assert len(syncs) == 2, "dependencies layer, then the workspace packages"
    for cmd in syncs:
        for flag in ("--frozen", "--no-dev", "--no-editable", '--package "streampair-$SERVICE"'):
            assert flag in cmd, f"{flag} missing in: {cmd}"
    assert "--no-install-workspace" in syncs[0] and "--no-install-workspace" not in syncs[1]
    assert 'test -n "$SERVICE"' in syncs[0], "a build without SERVICE fails with a message"
    builder_env = " ".join(builder.all("ENV"))
    assert "UV_PROJECT_ENVIRONMENT=/app/.venv" in builder_env
    assert "UV_PYTHON_DOWNLOADS=never" in builder_env
    assert not any(kw == "ADD" for stage in by_name.values() for kw, _ in stage.instructions)


@pytest.mark.parametrize("service", list(SERVICES))
def test_service_stage(service: str) -> None:
    package = SERVICES[service]
    runtime, final = chain(service)[-2:]
    assert [s.name for s in chain(service)] == ["runtime", service], "each service stage is FROM runtime"
    instructions = runtime.instructions + final.instructions

    def all_of(keyword: str) -> list[str]:
        return [args for kw, args in instructions if kw == keyword]

    # only the venv, no build tools, non-root, exec form, health, signals
    copies = all_of("COPY")
    assert copies and all(c.startswith("--from=builder") and "/app/.venv" in c for c in copies)
    for run_cmd in all_of("RUN"):
        assert not re.search(r"\b(apt-get|apk|pip|uv|gcc|make|curl|wget)\b", run_cmd), run_cmd
    # the builder installed the package this stage runs (--target and --build-arg SERVICE agree)
    assert ["python", "-c", f"import {package}"] in [
        exec_form(r) for r in final.all("RUN") if r.startswith("[")
    ]
    assert final.all("USER") == ["10001:10001"]
    user_index = max(i for i, (kw, _) in enumerate(instructions) if kw == "USER")
    assert all(kw != "RUN" for kw, _ in instructions[user_index:]), "RUN after USER"
    assert exec_form(final.all("CMD")[-1]) == ["python", "-m", package]
    assert all_of("STOPSIGNAL") == ["SIGTERM"]
    env = " ".join(all_of("ENV"))
    assert "PYTHONUNBUFFERED=1" in env
    assert "PATH=/app/.venv/bin:$PATH" in env
    health = final.all("HEALTHCHECK")
    assert len(health) == 1
    options, _, command = health[0].partition("CMD ")
    check = exec_form(command)
    assert check[:2] == ["python", "-c"]
    path = "/admin/v2/brokers/health" if service == "broker" else "/livez"
    assert path in check[2] and "urllib" in check[2]
    assert "--timeout=" in options and "--interval=" in options
    assert final.all("EXPOSE") == (["8080"] if service == "broker" else ["8000"])
    labels = " ".join(all_of("LABEL"))
    for key in ("title", "description", "version", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert f'org.opencontainers.image.title="streampair-{service}"' in " ".join(final.all("LABEL"))


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (".git", ".venv", "**/.venv", "tests", ".cache", "**/__pycache__", "bench", "**/*.env"):
        assert needed in patterns, needed
    # what the Dockerfiles COPY must stay in the context
    for kept in ("uv.lock", "pyproject.toml", "shared", "services"):
        assert kept not in patterns and f"/{kept}" not in patterns


# ----------------------------------------------------------------------------- the install recipe, run
def stage_build_context(service: str, target: Path) -> tuple[list[str], dict[str, str]]:
    """Copy what the builder stage COPYs (from the repository) into `target` and return its
    `uv sync` commands and ENV, as the image build would see them with --build-arg SERVICE=<service>."""
    builder = stages()["builder"]
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", "tests", ".pytest_cache", "*.egg-info")
    env: dict[str, str] = {}
    for keyword, raw in builder.instructions:
        args = substitute(raw, service)
        if keyword == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, dest = args.split()
        into_dir = dest.endswith("/") or dest in {".", "./"} or len(sources) > 1
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():  # COPY dir/ dest/: the directory's contents into dest
                shutil.copytree(origin, target / dest, ignore=ignored, dirs_exist_ok=True)
            else:
                final = target / dest / origin.name if into_dir else target / dest
                final.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, final)
    commands = []
    for cmd in builder.all("RUN"):
        if "uv sync" in cmd:
            commands.append(substitute(cmd[cmd.index("uv sync") :], service))
    return commands, env


@pytest.mark.timeout(600)
@pytest.mark.parametrize("service", list(SERVICES))
def test_image_install_recipe(service: str, tmp_path: Path) -> None:
    """Run the builder stage's `uv sync` steps on the files the Dockerfile copies, into a fresh
    environment, then start the entrypoint with a bad setting: it must import and exit 2."""
    uv = tool(
        "uv",
        "pip install uv (or make venv, which installs it into .venv-tools)",
        ROOT / ".venv-tools" / "bin",
    )
    context = tmp_path / "src"
    context.mkdir()
    commands, image_env = stage_build_context(service, context)
    assert len(commands) == 2
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV", "PYTHON"))}
    env.update({k: v for k, v in image_env.items() if k.startswith("UV_")})
    # the image's interpreter is /usr/local/bin/python3 (3.11); here: whatever 3.11 uv finds
    env.update({"UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON": "3.11", "UV_PYTHON_DOWNLOADS": "never"})
    for cmd in commands:
        result = run([uv, *shlex.split(cmd)[1:]], cwd=context, env=env, timeout=540)
        assert result.returncode == 0, f"{cmd}\n{result.stderr}"
    python = venv / "bin" / "python"
    # only the service and the shared library are installed, not the other services
    listing = run([uv, "pip", "list", "--python", str(python), "--format", "json"], env=env)
    names = {p["name"] for p in json.loads(listing.stdout)}
    assert {"streampair", f"streampair-{service}"} <= names
    assert (
        not ({"streampair-producer", "streampair-consumer", "streampair-broker"} - {f"streampair-{service}"})
        & names
    )
    assert not {"pytest", "ruff", "mypy"} & names, "dev dependencies in the image"
    # non-editable: the package lives in site-packages, not in the source tree
    where = run(
        [str(python), "-c", f"import {SERVICES[service]}; print({SERVICES[service]}.__file__)"],
        cwd=tmp_path,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    assert "site-packages" in where.stdout, where.stdout

    bad = "BROKER_PORT" if service == "broker" else "HTTP_PORT"
    proc_env = {**env, bad: "notaport", "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}"}
    proc = run([str(python), "-m", SERVICES[service]], cwd=tmp_path, env=proc_env, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and bad in lines[0], proc.stderr
