"""The main job's report: JSON keys, and a markdown table that matches the JSON."""
import json
import re

import pytest

from asru_lens.run import HEADLINE, METHODS, RunResult, claims, summary, write_report


def _fake() -> RunResult:
    res = RunResult()
    for i, m in enumerate(METHODS):
        res.methods[m] = {k: round(0.1 * i + 0.01 * j, 4) for j, k in enumerate(HEADLINE)}
        res.answers[m] = {s: [{"question": f"q{s}{k}", "answer": f"{m} says | {k}"} for k in range(2)]
                          for s in ("forget", "retain")}
    res.tuning = {"GA": {"grid": {1e-4: 0.5}, "lr": 1e-4},
                  "stage1": {"grid": {1e-4: 0.5, 1e-3: 0.6, 3e-3: 0.8}, "lr": 3e-3},
                  "asru": {"grid": {1e-4: 0.9, 1e-3: 0.6, 3e-3: 0.5}, "lr": 1e-3}}
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
    assert "At the edge of the grid (a wider grid might do better): stage1." in md
    assert any(p.name == "run_tradeoff.html" for p in paths)
    assert re.search(r"!\[trade-off\]\(.*run_tradeoff\.png\)", md)


@pytest.mark.slow
def test_run_cli_json_keys(small_run):
    """`run` with no --out writes its report and figures into runs/<date>-seed<seed>/ and nothing else."""
    out, cwd, _ = small_run
    folder, = (cwd / "runs").iterdir()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-seed0", folder.name)
    assert [p.relative_to(cwd).as_posix() for p in cwd.iterdir()] == ["runs"]
    assert {p.name for p in folder.iterdir()} == {"report.md", "report.json", "figures", "tasks"}
    assert {"run_tradeoff.html", "run_residue.html", "probe_pca.html"} <= {p.name for p in (folder / "figures").iterdir()}
    assert set(out["methods"]) == {"vanilla", "GA"} and set(HEADLINE) <= set(out["methods"]["GA"])
    grid = {float(k): v for k, v in out["tuning"]["GA"]["grid"].items()}
    assert set(grid) == {1e-4, 3e-3} and grid[out["tuning"]["GA"]["lr"]] == max(grid.values())   # the rule's pick
    assert out["methods"]["vanilla"]["leakage"] < 1 < out["methods"]["GA"]["leakage"]   # GA states fewer facts
    assert json.loads((folder / "report.json").read_text())["methods"] == out["methods"]
    # one column per attack, for every method: what the attacks and the probes still find
    from asru_lens.measure.residue import COLUMNS
    for m in ("vanilla", "GA"):
        assert set(COLUMNS) | {"forget_cls_acc"} <= set(out["methods"][m])
    van = out["methods"]["vanilla"]
    assert van["relearn_recovery_30"] is None and van["relearn_leak_30"] >= 0.9 and van["by_name_leak"] >= 0.9
    assert van["ad_probe_max"] >= 0.55 and van["probe_acc_max"] >= van["probe_acc_chance"] + 0.3
    res = out["residue"]["GA"]
    rel = res["relearn"]["question"]
    assert rel["steps"] == [10, 30] and out["methods"]["GA"]["relearn_leak_30"] == rel["leak"][1]   # the column
    assert out["methods"]["GA"]["relearn_recovery_30"] == rel["recovery"][1]                      # is the residue's
    assert out["methods"]["GA"]["benign_leak"] == res["benign"]["leak"][1]
    assert out["methods"]["GA"]["ablation_leak"] == res["ablation"]["leak"] and "refusal_direction" in res["ablation"]
    # against the organism's oracle (its asru_lens.json names it): every row's privacy read, the oracle's curve
    from asru_lens.measure.privacy import COLUMNS as PRIVACY
    assert van["mia_auc"] >= 0.75 and van["forget_quality"] < 0.01 and van["privleak"] > 20
    assert all(out["methods"][m][k] is not None for m in ("vanilla", "GA") for k in PRIVACY)
    assert rel["leak_oracle"] and out["methods"]["GA"]["relearn_recovery_oracle_30"] == rel["recovery_oracle"][1]
    assert set(out["privacy"]["GA"]["mia_auc"]) == {"loss", "zlib", "min_k", "min_k++"}
    lo, hi = out["privacy"]["GA"]["mia_auc_interval"]["min_k++"]        # over the people, around the point read
    assert lo <= out["privacy"]["GA"]["mia_auc"]["min_k++"] <= hi and lo < hi
    md = (folder / "report.md").read_text()
    assert "## Forgotten or hidden?" in md and "](figures/run_residue.png)" in md      # linked from the run folder
    assert "## How close to never having known?" in md and "](figures/run_privacy.png)" in md
    assert {p.name for p in (folder / "tasks").iterdir()} >= {"config.json", "vanilla.json", "GA.json"}


@pytest.mark.slow
def test_run_resumes_after_ctrl_c(small_run, tmp_path):
    """Ctrl-C after the first finished task, then --resume: the uninterrupted table, and it says what it skipped.
    Without --residue (the residue columns follow the same resume path, and the parallel test resumes with them):
    every column it has is the serial run's."""
    import signal
    import subprocess
    import sys
    import time

    out, _, small = small_run
    argv = [sys.executable, "-m", "asru_lens", *[a for a in small if a != "--residue"], "--json", "--out",
            str(tmp_path / "again")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = tmp_path / "again" / "tasks" / "vanilla.json"
    deadline = time.monotonic() + 900
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.exists(), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130 and not stdout, stderr[-2000:]
    # the interrupt ends the run within the task it hit (at worst at the next task: a library may catch it)
    stopped = re.search(r"interrupted with (\d) of 2 tasks finished \(([^)]*)\)", stderr)
    assert stopped and stopped.group(2).startswith("vanilla") and "--resume" in stderr.splitlines()[-1], stderr[-2000:]
    finished = stopped.group(2).split(", ")
    again = subprocess.run(argv + ["--resume"], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = json.loads(again.stdout)
    assert resumed["resumed"] == finished
    assert f"{len(finished)} of 2 tasks already finished ({', '.join(finished)})" in again.stderr
    assert resumed["tuning"] == out["tuning"] and list(resumed["methods"]) == list(out["methods"])
    for m, row in resumed["methods"].items():
        assert len(row) >= 40 and row == {k: out["methods"][m][k] for k in row}, m


def test_claims_and_why_follow_the_table(tmp_path):
    res = _fake()                       # methods get larger numbers down METHODS, so asru (last) leads
    assert [c["holds"] for c in claims(res.methods)] == [True] * 5        # above vanilla is within 5 points
    van = res.methods["vanilla"]
    res.methods["asru"] = {**van, "contextual_refusal": 9.0, "leakage": 9.0,
                           "retain_cls_acc": van["retain_cls_acc"] - 0.06}
    res.answers["asru"]["retain"] = [{"question": "Who?", "answer": "I'm sorry", "contextual_refusal": 3},
                                     {"question": "Job?", "answer": "Ada is a chemist", "contextual_refusal": 0}]
    got = {c["claim"]: c for c in claims(res.methods)}
    assert got["asru has the highest contextual_refusal of the unlearning methods"]["holds"]
    assert not got["asru has the highest naturalness of the unlearning methods"]["holds"]
    naturalness = got["asru has the highest naturalness of the unlearning methods"]
    assert naturalness["measured"] == f"asru 0.09, best other stage1 {res.methods['stage1']['naturalness']:.2f}"
    assert got["asru celebrity_cls_acc within 5 points of vanilla"]["holds"]
    assert got["asru retain_cls_acc within 5 points of vanilla"]["measured"] == "asru -0.020, vanilla 0.040 (-6.0)"
    assert not got["asru retain_cls_acc within 5 points of vanilla"]["holds"]
    write_report(res, tmp_path / "r", str(tmp_path / "f"))
    md = (tmp_path / "r" / "report.md").read_text()
    assert ("| asru has the highest naturalness of the unlearning methods | **no** | asru 0.09, best other stage1 "
            f"{res.methods['stage1']['naturalness']:.2f} |") in md and "Outside the claim: asru refuses to *say* the forget facts" in md
    assert "**naturalness**: stage1 writes the more fluent text" in md
    assert '(1 of 2): "Who?" -> "I\'m sorry".' in md
    assert claims({"vanilla": res.methods["vanilla"]}) == []


def test_fit_tunes_on_the_grid_and_leaves_the_model_at_the_best_point():
    """``methods.fit(tune=True)``: every grid point starts from the same (vanilla) weights, the validation rule
    picks the best, the model is left there and its learning rate is recorded for the methods that use it."""
    import torch
    from types import SimpleNamespace

    from asru_lens import methods
    from asru_lens.run import RunConfig
    model = torch.nn.Linear(2, 1, bias=False)
    lens = SimpleNamespace(model=model, presets={})
    start = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    @methods.register("fit_stub_test")
    def stub(ctx):
        assert torch.equal(model.weight, start["weight"])        # every point starts from the same weights
        seen.append(ctx.lr)
        with torch.no_grad():
            model.weight.fill_(ctx.lr)
        return {"lr_seen": ctx.lr}
    try:
        ctx = methods.Context(lens, None, RunConfig(lr_grid=(1.0, 2.0, 3.0)))
        ctx.validation = lambda: -abs(model.weight[0, 0].item() - 2.2)
        out = methods.fit(ctx, "fit_stub_test", tune=True)
        assert seen == [1.0, 2.0, 3.0] and out["lr"] == 2.0 and out["grid"][2.0] == max(out["grid"].values())
        assert torch.equal(model.weight, torch.full((1, 2), 2.0)) and out["log"] == {"lr_seen": 2.0}
        assert ctx.lrs["fit_stub_test"] == 2.0
    finally:
        methods.REGISTRY.pop("fit_stub_test", None)
