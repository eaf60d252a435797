"""docs/cli.md is what the parser says today (regenerate: python -m asru_lens.cli_reference > docs/cli.md)."""
import re
from pathlib import Path

from asru_lens import cli_reference

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def test_cli_reference_is_current():
    assert DOC.read_text() == cli_reference.markdown(), \
        "docs/cli.md is out of date: run `python -m asru_lens.cli_reference > docs/cli.md`"


def test_every_command_has_its_section_with_its_options():
    from asru_lens.cli import build_parser
    names = [n for n, _, _ in cli_reference._commands(build_parser(), "asru-lens")]
    assert {"asru-lens organism export", "asru-lens unlearn", "asru-lens evaluate", "asru-lens run"} <= set(names)
    sections = dict(re.findall(r"^## (asru-lens[^\n]*)\n(.*?)(?=^## |\Z)", DOC.read_text(), re.M | re.S))
    assert list(sections) == names
    assert "--method METHOD" in sections["asru-lens unlearn"] and "--budget" in sections["asru-lens run"]
    assert "--style" in sections["asru-lens organism export"] and "--method" not in sections["asru-lens probe"]


def test_the_reference_does_not_depend_on_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "37")
    assert cli_reference.markdown() == DOC.read_text()
