"""`hemascope train detect` refuses bad options before it loads anything."""

import pytest

from .conftest import run_cli


@pytest.mark.parametrize(("args", "message"), [
    (["--activation", "gelu"], "use relu or silu"),
    (["--activation", "relu", "--resume"], "keeps its activation"),
    (["--label-fixes", "{fixes}", "--resume"], "keeps its merged labels"),
])
def test_train_detect_rejects_options_it_cannot_apply(tmp_path, args, message):
    fixes = tmp_path / "fixes.json"
    fixes.write_text('{"about": "", "fixes": []}')
    args = [a.format(fixes=fixes) for a in args]
    result = run_cli("train", "detect", str(tmp_path), "--out", str(tmp_path / "run"), *args)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "run").exists()
