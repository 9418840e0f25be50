"""Shared helpers of the deployment tests: paths, tool lookup, compose-style YAML merging."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
SERVICES = {"producer": "producer", "consumer": "consumer", "broker": "broker"}  # service dir -> package


def tool(name: str, install_hint: str, *extra_dirs: Path) -> str:
    """Path of a command-line tool, or skip the test naming what to install."""
    found = shutil.which(name)
    if found is None:
        for folder in (VENV_BIN, *extra_dirs):
            candidate = folder / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                found = str(candidate)
                break
    if found is None:
        pytest.skip(f"{name} not found: {install_hint}")
    return found


def run(
    cmd: list[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


# ----------------------------------------------------------------------------- compose merge
class _Tagged:
    """A value under a compose-spec merge tag: `!reset` (drop) or `!override` (replace, don't merge)."""

    def __init__(self, tag: str, value: Any) -> None:
        self.tag = tag
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader that understands compose's `!reset` and `!override` tags."""


def _construct_tagged(loader: ComposeLoader, node: yaml.Node) -> _Tagged:
    if isinstance(node, yaml.MappingNode):
        value: Any = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)  # type: ignore[arg-type]
    return _Tagged(node.tag[1:], value)


ComposeLoader.add_constructor("!reset", _construct_tagged)
ComposeLoader.add_constructor("!override", _construct_tagged)


def load_compose(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data: dict[str, Any] = yaml.load(handle, Loader=ComposeLoader)  # a SafeLoader subclass
        return data


def _strip(value: Any) -> Any:
    if isinstance(value, _Tagged):
        return None if value.tag == "reset" else _strip(value.value)
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not (isinstance(v, _Tagged) and v.tag == "reset")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _volume_target(entry: Any) -> Any:
    if isinstance(entry, dict):
        return entry.get("target")
    parts = str(entry).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def merge_compose(base: Any, override: Any, key: str | None = None) -> Any:
    """Merge like the compose spec (docs: compose-file/13-merge): mappings by key, scalars replaced,
    `command`/`entrypoint`/`healthcheck.test` replaced, `volumes` by target, other sequences appended
    without duplicates, `!override` replaces, `!reset` removes."""
    if isinstance(override, _Tagged):
        return None if override.tag == "reset" else _strip(override.value)
    if isinstance(base, dict) and isinstance(override, dict):
        out = copy.deepcopy(base)
        for k, v in override.items():
            if isinstance(v, _Tagged) and v.tag == "reset":
                out.pop(k, None)
            elif k in out:
                out[k] = merge_compose(out[k], v, k)
            else:
                out[k] = _strip(v)
        return out
    if isinstance(base, list) and isinstance(override, list):
        if key in {"command", "entrypoint", "test"}:
            return _strip(override)
        if key == "volumes":
            targets = {_volume_target(v): v for v in base}
            targets.update({_volume_target(v): v for v in override})
            return list(targets.values())
        return base + [v for v in _strip(override) if v not in base]
    return _strip(override)


def merged_compose(*files: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name in files:
        result = merge_compose(result, load_compose(ROOT / name))
    return result


def enabled_services(model: dict[str, Any], profiles: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        name: svc
        for name, svc in model["services"].items()
        if not svc.get("profiles") or set(svc["profiles"]) & set(profiles)
    }
