"""Regenerate docs/profiles.md from the profile model's field descriptions.

    python scripts/gen_profile_docs.py
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from edge.config import Profile

ROOT = Path(__file__).resolve().parents[1]
INTRO = """# Device profiles

A profile is a TOML file that describes one device: where fields come from, which model and
runtime to use, thresholds, quality control, storage and sync. `hemascope run --profile FILE`
loads it; an unknown key or a wrong type is an error that names the key. Every key has a
default, and the defaults are the `workstation-dev` profile. Relative paths are resolved
against the profile's folder. Shipped profiles: `firmware_config/profiles/*.toml`.
A profile must be a regular UTF-8 file of at most 1 MB, nested at most 8 deep; numbers must be
finite and within the range shown (docs/reliability.md, "Profiles").
This page is generated from `edge/config.py` by `python scripts/gen_profile_docs.py`.
"""
SHOWN_DEFAULTS = {("model", "detector"): "bundled edge/models/detector.onnx",
                  ("classifiers", "wbc_model"): "bundled edge/models/wbc-differential.onnx",
                  ("classifiers", "all_model"): "bundled edge/models/all-subtype.onnx",
                  ("storage", "data_dir"): "user data dir (~/.local/share/hemascope)"}


def _section(name: str, model: BaseModel) -> list[str]:
    """The table of one section, then its sub-sections (e.g. [protocol.flags])."""
    lines = [f"## [{name}]", "", "| key | default | meaning |", "| --- | --- | --- |"]
    nested = []
    for key, f in type(model).model_fields.items():
        default = SHOWN_DEFAULTS.get((name, key), getattr(model, key))
        if isinstance(default, BaseModel):
            nested.append((f"{name}.{key}", default))
            continue
        shown = "empty" if default is None else f"`{default}`"
        lines.append(f"| `{key}` | {shown} | {f.description}{_range(f.metadata)} |")
    lines.append("")
    for sub, value in nested:
        lines += _section(sub, value)
    return lines


def _range(metadata: list[object]) -> str:
    """' Range: > 0, ≤ 3600.' from a field's bounds, or ''."""
    signs = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}
    bounds = [f"{sign} {getattr(m, name):,}".replace(",", " ")
              for m in metadata for name, sign in signs.items() if hasattr(m, name)]
    return f" Range: {', '.join(bounds)}." if bounds else ""


def render() -> str:
    lines = [INTRO]
    for section, field in Profile.model_fields.items():
        lines += _section(section, field.default)
    example = (ROOT / "firmware_config" / "profiles" / "rpi5-cpu.toml").read_text().strip()
    lines += ["## Example", "", "```toml", example, "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    (ROOT / "docs" / "profiles.md").write_text(render())
