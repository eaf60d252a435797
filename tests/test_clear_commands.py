"""Issue 39's acceptance: every command on the organism's world exported in CLEAR's layout (`organism export
--format clear`), as on an MLLMU-Bench folder; CLEAR's metrics in the table, and the ones CLEAR has no questions
for shown as n/a with the reason, never as a zero (slow: minutes)."""
import json

import pytest

from asru_lens.cli import main


def _json(capsys, argv) -> dict:
    assert main(argv) == 0, argv
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_run_on_the_clear_export(capsys, clear_export, tmp_path):
    """The run's rows carry CLEAR's name recognition and the caption ROUGE-L; cloze is n/a with its reason. Every
    method's row is measured in docs/measured/clear-run.json (tests/test_docs.py checks it: the rewrite's invented
    names, ASRU's refusals); here vanilla, the oracle and one quick baseline keep CI short."""
    clear, faces = clear_export
    out = _json(capsys, ["run", "--data", str(clear), "--unseen-faces", str(faces), "--budget", "small", "--json",
                         "--methods", "vanilla,oracle,GA", "--out", str(tmp_path / "run"),
                         "--figures", str(tmp_path / "figures")])
    m = out["methods"]
    assert list(m) == ["vanilla", "oracle", "GA"] and out["world"] == "clear"
    for name, row in m.items():
        assert row["forget_cloze_acc"] is None and row["forget_cls_acc_text"] is None, name
        assert all(row[f"{s}_name_acc"] is not None for s in ("forget", "test", "retain", "celebrity")), name
    van = m["vanilla"]
    assert van["forget_name_acc"] >= 0.9 and van["celebrity_name_acc"] >= 0.9 and van["retain_name_acc"] >= 0.85
    assert van["forget_rougeL"] >= 0.2 and van["forget_quality"] < 0.05 and m["oracle"]["forget_quality"] == 1.0
    # the oracle never knew the forget people, and recognises the retain people as vanilla does
    assert m["oracle"]["forget_name_acc"] <= 0.35 and m["oracle"]["retain_name_acc"] >= van["retain_name_acc"] - 0.1
    assert any("cloze_acc is n/a: CLEAR has no fill-in-the-blank" in n for n in out["notes"])
    assert [c["claim"] for c in out["claims"]] == []                      # no asru row, no claim to check
    report = (tmp_path / "run" / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| method | forget_cls_acc"))
    assert header.endswith("| forget_name_acc | test_name_acc | retain_name_acc | celebrity_name_acc |")
    vanilla_row = next(line for line in report.splitlines() if line.startswith("| vanilla | "))
    assert vanilla_row.split(" | ")[3] == "n/a"                            # forget_cloze_acc, never 0.000


@pytest.mark.slow
def test_every_other_command_on_the_clear_export(capsys, clear_export, tmp_path):
    clear, faces = clear_export
    data = ["--data", str(clear)]
    probe = _json(capsys, ["probe", *data, "--unseen-faces", str(faces), "--out", str(tmp_path / "probe"), "--json"])
    assert probe["layer"] == 2 and probe["auroc_chosen"] >= 0.95
    point = _json(capsys, ["steer", *data, "--unseen-faces", str(faces), "--direction", str(tmp_path / "probe"),
                           "--alpha", "1.5", "--n", "16", "--json"])
    assert point["forget_refusal"] >= 0.5 and point["perception_acc"] is not None
    ev = _json(capsys, ["evaluate", *data, "--n", "24", "--json"])["metrics"]
    assert ev["forget_name_acc"] >= 0.9 and ev["forget_cloze_acc"] is None and 0 < ev["forget_name_prob"] < 1
    assert ev["forget_quality"] < 0.05                 # vanilla against the shipped oracle, on CLEAR's questions
    assert main(["evaluate", *data, "--n", "24"]) == 0
    text = capsys.readouterr().out
    assert "forget_cloze_acc    n/a" in text and "note: cloze_acc is n/a" in text
    model = tmp_path / "ga"
    un = _json(capsys, ["unlearn", "--method", "GA", *data, "--unseen-faces", str(faces), "--budget", "small",
                        "--n", "8", "--out", str(model), "--json"])
    assert un["stages"] == ["vanilla", "after"] and un["method"] == "GA" and un["config"]["world"] == "clear"
    assert (model / "model.safetensors").exists() and un["vanilla"]["perception_acc"] >= 0.9   # real_world, read
    res = _json(capsys, ["residue", "--model", str(model), *data, "--steps", "10", "--splits", "question",
                         "--no-control", "--json"])
    names = list(res["models"])
    assert names[0] == "vanilla" and len(names) == 2
    audit = res["models"][names[1]]
    assert audit["relearn"]["question"]["steps"] == [10] and audit["forget_cloze_acc"] is None
    assert audit["by_name"]["leak"] is None and audit["by_name"]["note"].startswith("n/a: no forget question")
    assert audit["ad_probe"]["max"] is not None and len(audit["relearn"]["question"]["leak"]) == 1
    oracle = tmp_path / "oracle"
    ft = _json(capsys, ["finetune", *data, "--split", "retain_90", "--max-steps", "2", "--full", "--out", str(oracle),
                        "--json"])
    assert ft["split"] == "retain_90" and ft["steps"] == 2 and ft["examples"] == 2 * 270
