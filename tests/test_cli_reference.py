"""docs/cli.md is what the parser says today (regenerate: python -m asru_lens.cli_reference > docs/cli.md)."""
import argparse
import os
import re
from pathlib import Path

from asru_lens import cli_reference
from asru_lens.cli import build_parser

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
REGENERATE = "docs/cli.md is out of date: run `python -m asru_lens.cli_reference > docs/cli.md`"


def sections() -> dict[str, str]:
    """{"asru-lens unlearn": the text under that heading, ...} in the file's order."""
    return dict(re.findall(r"^## (asru-lens[^\n]*)\n(.*?)(?=^## |\Z)", DOC.read_text(), re.M | re.S))


def test_cli_reference_is_current():
    assert DOC.read_text() == cli_reference.markdown(), REGENERATE


def test_every_command_has_its_section_with_its_options():
    parser = build_parser()
    # the commands as argparse itself lists them in the usage lines, read independently of the walker
    top = re.search(r"\{([a-z,]+)\}", parser.format_usage()).group(1).split(",")
    organism = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["organism"]
    nested = re.search(r"\{([a-z,]+)\}", organism.format_usage()).group(1).split(",")
    assert top[0] == "organism" and "run" in top and nested == ["build", "eval", "portraits", "export"]
    expected = [f"asru-lens {t}" for t in top]
    expected[1:1] = [f"asru-lens organism {n}" for n in nested]          # nested ones just after their parent
    assert [n for n, _, _ in cli_reference._commands(parser, "asru-lens")] == expected
    got = sections()
    assert list(got) == expected, REGENERATE
    assert "--method METHOD" in got["asru-lens unlearn"] and "--budget {preset,full,small}" in got["asru-lens unlearn"]
    assert "--budget {full,small}" in got["asru-lens run"]
    assert "--style {template,free}" in got["asru-lens organism export"]
    assert "--method " not in got["asru-lens probe"] and "--budget" not in got["asru-lens probe"]


def test_the_reference_does_not_depend_on_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "37")
    narrow = cli_reference.markdown()
    assert os.environ["COLUMNS"] == "37"                                   # the caller's width is put back
    monkeypatch.delenv("COLUMNS")
    assert cli_reference.markdown() == narrow == DOC.read_text(), REGENERATE
    assert "COLUMNS" not in os.environ
    assert max(len(line) for line in narrow.split("```text")[1].splitlines()) <= 100
