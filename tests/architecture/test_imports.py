"""The house plan holds: no import cycle, rooms import only through their doors, and the light
rooms stay light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("edge", "training", "export", "hub")

# Which rooms of edge each room may import (besides itself and `edge`'s own __version__).
DOORS = {
    "core": set(),
    "config": {"core", "clinical"},
    "capture": {"core", "config"},
    "inference": {"core", "config"},
    "storage": {"core", "config"},
    "report": {"core", "config", "storage", "clinical"},
    "sync": {"core", "config", "storage", "report"},
    "pipeline": {"core", "config", "capture", "inference", "storage", "report", "sync",
                 "clinical"},
    "clinical": set(),
    "site": {"core", "config", "inference", "storage", "pipeline", "sync"},
    "cli": {"core", "config", "capture", "inference", "storage", "report", "sync", "pipeline",
            "clinical", "site"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """{module: modules of these packages it imports anywhere: top level, inside functions,
    under TYPE_CHECKING}."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}"
                            in modules else node.module for alias in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_edge_training_export_or_hub():
    graph = import_graph()
    assert {"edge.config", "edge.storage.store", "training.datasets", "hub.app"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_rooms_of_edge_import_only_through_their_doors():
    wrong = []
    for module, targets in import_graph().items():
        parts = module.split(".")
        if parts[0] != "edge" or len(parts) < 2 or parts[1] not in DOORS:
            continue
        for target in targets:
            if target.split(".")[0] in ("training", "export", "hub"):
                wrong.append(f"{module} -> {target}")
                continue
            room = target.split(".")[1] if target.count(".") else None
            if room is not None and room != parts[1] and room not in DOORS[parts[1]]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def _loaded(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    return {m.split(".")[0] for m in json.loads(done.stdout.splitlines()[-1])}


def test_config_clinical_sync_and_the_hub_load_no_opencv_numpy_or_onnxruntime():
    sync = [m for m in _modules() if m.startswith("edge.sync")]
    assert {"edge.sync.client", "edge.sync.bundle", "edge.sync.models", "edge.sync.payload"
            } <= set(sync)
    clinical = [m for m in _modules() if m.startswith("edge.clinical")]
    hub = [m for m in _modules() if m.startswith("hub") and m != "hub.__main__"]
    for code in ("import edge.config", "\n".join(f"import {m}" for m in clinical),
                 "\n".join(f"import {m}" for m in sync),
                 "\n".join(f"import {m}" for m in hub)):
        heavy = _loaded(code) & {"cv2", "numpy", "onnxruntime"}
        assert not heavy, (code, heavy)


def test_importing_all_of_edge_loads_no_workstation_or_hub_code():
    edge = [m for m in _modules() if m.split(".")[0] == "edge" and m != "edge.__main__"]
    loaded = _loaded("\n".join(f"import {m}" for m in edge))
    assert "edge" in loaded
    assert not loaded & {"training", "export", "hub", "torch", "ultralytics", "fastapi",
                         "cryptography"}  # signatures: the `sign` extra, imported when used
