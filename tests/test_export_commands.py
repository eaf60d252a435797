"""Issue 14's acceptance on the organism's world exported as a plain MLLMU-Bench download plus a folder of
unseen faces: every command runs on it exactly as on the organism's own world (slow: minutes each). The
notebooks run with small parameters here (their full run is nbval's, on the organism's world)."""
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import asru_lens
from asru_lens.cli import main
from asru_lens.run import METHODS

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


def _json(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_probe_on_export_selects_the_same_layer(capsys, export, probe_json):
    mllmu, faces = export
    own = probe_json
    exported = _json(capsys, ["probe", "--data", str(mllmu), "--unseen-faces", str(faces), "--json"])
    assert exported["layer"] == own["layer"] and exported["position"] == own["position"]
    assert abs(exported["auroc_chosen"] - own["auroc_chosen"]) <= 0.02
    assert exported["counts"]["refusal_kept"] >= 8
    assert any("modality" in n for n in exported["notes"]) and exported["modality_cosine"] is None


@pytest.mark.slow
def test_unlearn_on_export(unlearned_export, export):
    out, model_dir, ckpt = unlearned_export
    van, s1, s2 = out["vanilla"], out["stage1"], out["stage2"]
    assert s2["forget_refusal"] >= 0.9 and s2["forget_leak"] <= 0.05 and s2["test_refusal"] >= 0.8
    assert s2["retain_utility"] >= van["retain_utility"] - 0.05
    assert s2["celebrity_utility"] >= van["celebrity_utility"] - 0.05
    assert van["perception_acc"] is None and s2["perception_acc"] is None
    assert any("perception_acc is null" in n for n in out["config"]["notes"])
    assert out["config"]["world"] == "mllmu" and out["config"]["protocol"] == "organism"
    # the organism knows the forget people before unlearning; stage 1 alone turns a good share of them into
    # refusals (measured: 0.41 refusal, 0.54 leak) and leaves retain people answered; stage 2 does the rest
    assert van["forget_refusal"] <= 0.05 and van["forget_leak"] >= 0.9
    assert s1["forget_refusal"] >= 0.3 and s1["forget_leak"] <= 0.7
    assert s1["retain_utility"] >= van["retain_utility"] - 0.1
    assert out["layer"] == 2 and out["config"]["settings"]["asru"]["steps"] == 150 and out["config"]["seed"] == 0
    assert out["method"] == "asru" and out["stages"] == ["vanilla", "stage1", "stage2"]
    assert [p.name for p in ckpt.iterdir()] == ["step-000150"]
    back = asru_lens.load(str(model_dir))
    from asru_lens.core import data
    from asru_lens.measure.refusal import is_refusal
    forget = data.generation_items(asru_lens.open_world(str(export[0]), unseen_faces=str(export[1])).rows(10)["forget"])
    answers = back.generate([q.question for q in forget[:8]], [q.image for q in forget[:8]], max_new_tokens=24)
    assert back.is_organism and sum(map(is_refusal, answers)) >= 7    # the saved model refuses as the measured one


@pytest.mark.slow
def test_run_on_export_small_budget(capsys, export, tmp_path):
    """Every registered method is a row (MMUnlearner, RMU and the rewrite included), each meets its own claims,
    and a row is one definition: the model the run kept for it (``--save-models``), evaluated, gives the row, and
    `unlearn --method GA` at the run's learning rate trains the model behind GA's row. Stage 2 at 20 GRPO steps
    per learning rate (`--steps`; the small budget's 40 are notebook 04's, on the same people)."""
    mllmu, faces = export
    data = ["--data", str(mllmu), "--unseen-faces", str(faces)]
    saved = tmp_path / "models"
    out = _json(capsys, ["run", *data, "--budget", "small", "--steps", "20", "--json", "--out", str(tmp_path / "run"),
                         "--reports", str(tmp_path / "reports"), "--save-models", str(saved),
                         "--figures", str(tmp_path / "figures")])
    m = out["methods"]
    assert list(m) == list(METHODS)
    van = m["vanilla"]
    assert van["forget_cls_acc"] >= 0.8 and van["leakage"] <= 0.5 and van["contextual_refusal"] <= 0.5
    for name in ("GA", "GD", "KL", "NPO", "IDK", "MMUnlearner", "steer", "asru", "rewrite"):
        assert m[name]["leakage"] > van["leakage"] + 0.5, name     # each forgets: fewer facts in its answers
    assert m["RMU"]["leakage"] >= van["leakage"] + 0.25             # RMU moves least at 20 steps (measured: 0.5)
    assert m["asru"]["contextual_refusal"] >= max(m[x]["contextual_refusal"] for x in ("GA", "GD", "KL", "NPO"))
    assert m["asru"]["retain_cls_acc"] >= van["retain_cls_acc"] - 0.05
    assert m["rewrite"]["forget_cls_acc"] <= van["forget_cls_acc"] - 0.3   # the rewrite removes, A-D sees it
    assert out["protocol"] == "organism" and out["world"] == "mllmu"
    report = (tmp_path / "reports" / "report.md").read_text()
    assert "Evaluation protocol: **organism**" in report and "perception_acc is null" in report
    assert "relearn_recovery_30" not in m["asru"]                     # the small budget leaves the residue out
    assert json.loads((tmp_path / "run" / "tasks" / "config.json").read_text())["budget"]["grpo_steps"] == 20

    def evaluated(model):
        return _json(capsys, ["evaluate", "--model", str(model), "--data", str(mllmu), "--n", "24", "--seed", "0",
                              "--json"])["metrics"]
    # the rewrite's kept model is its row (the rewrite trains for minutes: its unlearn path is fit's, as GA's)
    ev = evaluated(saved / "rewrite")
    for k in ("forget_cls_acc", "leakage", "contextual_refusal"):
        assert ev[k] == pytest.approx(m["rewrite"][k], abs=1e-4), k
    # one definition of training: `unlearn` at the run's learning rate, saved, reopened and evaluated
    _json(capsys, ["unlearn", "--method", "GA", *data, "--budget", "small", "--lr", str(out["tuning"]["GA"]["lr"]),
                   "--n", "8", "--out", str(tmp_path / "GA"), "--json"])
    ev = evaluated(tmp_path / "GA")
    for k in ("forget_cls_acc", "leakage", "contextual_refusal", "retain_cls_acc"):
        assert ev[k] == pytest.approx(m["GA"][k], abs=1e-4), k


def _run_notebook(name: str, params: dict) -> nbformat.NotebookNode:
    """Execute notebook ``name`` with ``params`` injected after its parameters cell (as papermill does)."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items())))
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("name, extra, shows", [
    ("01_refusal_directions.ipynb", {"N": 32}, "'layer': 2"),
    ("02_steering.ipynb", {"N": 12}, "'forget_refusal'"),
    ("03_unlearning.ipynb", {"N_EVAL": 24, "SETTINGS": {"stage1": {"n_retain": 96}, "asru": {"steps": 5}}},
     "direction at resid_pre[2]"),
    ("04_evaluation.ipynb", {"METHODS": ("vanilla", "GA")}, "forget_cls_acc")])
def test_notebooks_run_on_the_export(name, extra, shows, export, tmp_path):
    mllmu, faces = export
    params = {"DATA": str(mllmu), "UNSEEN_FACES": str(faces), **extra}
    if name != "04_evaluation.ipynb":
        params["FIGURES"] = str(tmp_path)              # never overwrite the committed figures
    nb = _run_notebook(name, params)
    parameters = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert "UNSEEN_FACES" in parameters.source and "DigiFace" in parameters.source
    printed = "".join(str(o.get("text") or o.get("data", {}).get("text/plain", "")) for c in nb.cells
                      if c.cell_type == "code" for o in c.get("outputs", []))
    assert shows in printed                      # what the notebook computed on the export (the organism's layer)
