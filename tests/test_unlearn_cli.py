"""`asru-lens unlearn`'s argument checks (the whole pipeline runs in tests/test_export_commands.py)."""
import pytest

from asru_lens.cli import main


def test_unlearn_bad_forget_split(capsys):
    with pytest.raises(SystemExit):
        main(["unlearn", "--forget", "7"])
    assert "invalid choice: 7" in capsys.readouterr().err
