"""Shared fixtures: the real bundled model, real datasets (skipped when absent), the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
BUNDLED_MODEL = ROOT / "edge" / "models" / "detector.onnx"


def needs_datasets() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {DATASETS}")
    return DATASETS


@pytest.fixture
def datasets() -> Path:
    return needs_datasets()


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `hemascope ARGS` in a fresh interpreter, as an operator would."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=timeout, check=False)
