"""`hemascope train detect` refuses bad options before it loads anything."""

import pytest

from .conftest import run_cli


@pytest.mark.parametrize(("args", "message"), [
    (["--activation", "gelu"], "use relu or silu"),
    (["--activation", "relu", "--resume"], "keeps its activation"),
])
def test_train_detect_rejects_an_activation_it_cannot_apply(tmp_path, args, message):
    result = run_cli("train", "detect", str(tmp_path), "--out", str(tmp_path / "run"), *args)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "run").exists()
