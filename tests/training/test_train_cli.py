"""`hemascope train` refuses bad options before it loads anything."""

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(("args", "message"), [
    (["--activation", "gelu"], "use relu or silu"),
    (["--activation", "relu", "--resume"], "keeps its activation"),
    (["--label-fixes", "{fixes}", "--resume"], "keeps its merged labels"),
    (["--label-fixes", "{bad}"], "fixes.0.action"),
])
def test_train_detect_rejects_options_it_cannot_apply(tmp_path, args, message):
    fixes = tmp_path / "fixes.json"
    fixes.write_text('{"about": "", "fixes": []}')
    bad = tmp_path / "bad.json"
    bad.write_text('{"about": "", "fixes": [{"image": "%s", "action": "move", "class": "WBC", '
                   '"box": [0, 0, 1, 1], "finding": "x"}]}' % ("a" * 16))
    args = [a.format(fixes=fixes, bad=bad) for a in args]
    result = run_cli("train", "detect", str(tmp_path), "--out", str(tmp_path / "run"), *args)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "run").exists()


def test_train_classify_rejects_an_unknown_class_share(tmp_path):
    result = run_cli("train", "classify", str(tmp_path), "--out", str(tmp_path / "run"),
                     "--class-share", "cube")
    assert result.returncode == 2 and "'cube' is not one of equal, sqrt" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()
