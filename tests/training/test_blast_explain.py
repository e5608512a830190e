"""`hemascope explain` on a blast call (issue #21). The 9-class differential with a `blast`
class (`training/checkpoints/wbc-blast-v0.pt`, trained and not bundled), exported as the CLI
exports it, classifies the white cells of Pre-B ALL fields in a real run; explain reproduces
a stored blast call from the evidence and writes its overlay."""

import json
import shutil

import cv2

from edge.storage.store import Store
from tests.conftest import ROOT, run_cli

CHECKPOINT = ROOT / "training" / "checkpoints" / "wbc-blast-v0.pt"


def test_explain_works_on_the_blast_call_of_a_cell(tmp_path, datasets):
    model = tmp_path / "wbc-blast.onnx"
    exported = run_cli("export", "onnx", str(CHECKPOINT), "--out", str(model))
    assert exported.returncode == 0, exported.stderr[-2000:]
    fields = tmp_path / "fields"
    fields.mkdir()
    for path in sorted((datasets / "classification" / "all-4class" / "Pre").iterdir())[:6]:
        shutil.copy(path, fields / path.name)
    profile = tmp_path / "p.toml"
    # these dataset fields are bright processed images that exposure control would reject
    profile.write_text(f'[classifiers]\nwbc = true\nwbc_model = "{model}"\n'
                       "[qc]\nenabled = false\n")
    data = tmp_path / "data"
    ran = run_cli("run", "-p", str(profile), "-s", f"folder:{fields}", "--data-dir", str(data),
                  "--json", str(tmp_path / "report.json"))
    assert ran.returncode == 0, ran.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["differential"]["counts"].get("blast", 0) > 0
    assert "blast" in report["differential"]["interval_95"]
    store = Store.open(data)
    sid = report["session_id"]
    idx, cell, stored = next((f["idx"], i, c) for f in report["fields"]
                             for i, c in enumerate(store.cells(sid, f["idx"]))
                             if c.label == "blast")
    out = tmp_path / "blast.png"
    explained = run_cli("explain", sid[:8], str(idx), "--cell", str(cell), "-p", str(profile),
                        "--data-dir", str(data), "--out", str(out))
    assert explained.returncode == 0, explained.stderr
    assert f"stored blast {stored.label_score:.3f}" in explained.stdout
    assert f"recomputed with wbc-blast.onnx blast {stored.label_score:.3f}" in explained.stdout
    assert cv2.imread(str(out)) is not None
