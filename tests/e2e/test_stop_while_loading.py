"""A stop (SIGTERM) that comes while `hemascope run` still loads onnxruntime and its models,
before any session exists: exit code 130 like Ctrl-C, no traceback, nothing stored.

onnxruntime turns an exception raised during its native initialisation into
'ImportError: initialization failed' (the kill script met it: exit code 1 and a traceback),
so the command holds a stop back until the models are loaded (`edge.cli.main._Stop`). Here a
hook (sitecustomize on PYTHONPATH) has another process send the real signal as onnxruntime's
native module starts to initialise. Where exactly the interpreter then handles it depends on
the scheduling; the kill script (scripts/kill_runs.py) stops runs at every moment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from scripts.kill_runs import session_of
from tests.conftest import run_cli

HOOK = '''
import importlib.abc, importlib.util, os, subprocess, sys

TARGET = "onnxruntime.capi.onnxruntime_pybind11_state"


class _Loader(importlib.abc.Loader):
    def __init__(self, real):
        self.real = real

    def create_module(self, spec):
        subprocess.Popen(["kill", "-TERM", str(os.getpid())])
        return self.real.create_module(spec)

    def exec_module(self, module):
        return self.real.exec_module(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        spec.loader = _Loader(spec.loader)
        return spec


sys.meta_path.insert(0, _Finder())
'''


def test_sigterm_while_onnxruntime_loads_exits_130_and_stores_nothing(tmp_path, datasets):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    images = tmp_path / "images"
    images.mkdir()
    for p in sorted((datasets / "detection" / "bccd" / "JPEGImages").glob("*.jpg"))[:3]:
        shutil.copy2(p, images / p.name)
    data = tmp_path / "data"
    root = Path(__file__).resolve().parents[2]
    result = run_cli("run", "-s", f"folder:{images}", "--data-dir", str(data), "--sample",
                     "S-LOADING", env={"PYTHONPATH": os.pathsep.join([str(hook), str(root)])})
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr and "Error" not in result.stderr
    assert session_of(data, "S-LOADING") is None  # stopped before its session
