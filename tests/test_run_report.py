"""The main job's report: JSON keys, and a markdown table that matches the JSON."""
import json
import re

from asru_lens.run import HEADLINE, METHODS, RunResult, summary, write_report


def _fake() -> RunResult:
    res = RunResult()
    for i, m in enumerate(METHODS):
        res.methods[m] = {k: round(0.1 * i + 0.01 * j, 4) for j, k in enumerate(HEADLINE)}
        res.answers[m] = {s: [{"question": f"q{s}{k}", "answer": f"{m} says | {k}"} for k in range(2)]
                          for s in ("forget", "retain")}
    res.tuning = {"GA": {"grid": {1e-4: 0.5}, "lr": 1e-4}}
    return res


def test_report_table_matches_json(tmp_path):
    res = _fake()
    paths = write_report(res, tmp_path / "reports", str(tmp_path / "figures"))
    info = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert set(info["methods"]) == set(METHODS) and info == json.loads(json.dumps(summary(res)))
    md = (tmp_path / "reports" / "report.md").read_text()
    rows = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] in METHODS and len(cells) == len(HEADLINE) + 1:
            rows[cells[0]] = [float(c) for c in cells[1:]]
    assert set(rows) == set(METHODS)
    for m in METHODS:
        assert rows[m] == [round(info["methods"][m][k], 3) for k in HEADLINE]
    assert "GA 0.0001" in md and "asru says / 1" in md            # tuning and escaped example answers
    assert any(p.name == "run_tradeoff.html" for p in paths)
    assert re.search(r"!\[trade-off\]\(.*run_tradeoff\.png\)", md)


def test_run_cli_json_keys(tmp_path, capsys):
    from asru_lens.cli import main
    assert main(["run", "--budget", "small", "--methods", "vanilla,GA", "--json", "--reports",
                 str(tmp_path / "r"), "--figures", str(tmp_path / "f")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["methods"]) == {"vanilla", "GA"} and set(HEADLINE) <= set(out["methods"]["GA"])
    assert out["tuning"]["GA"]["lr"] in (1e-4, 3e-4)
    assert 0 <= out["methods"]["vanilla"]["leakage"] < 1 < out["methods"]["GA"]["leakage"] <= 5
    assert json.loads((tmp_path / "r" / "report.json").read_text())["methods"] == out["methods"]
