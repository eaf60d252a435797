"""`asru-lens unlearn`: the whole pipeline, with a two-step stage 2 so the test stays short."""
import json

import pytest

import asru_lens
from asru_lens.cli import main

KEYS = {"forget_refusal", "forget_leak", "retain_exact", "celebrity_exact", "perception_acc", "test_refusal"}


@pytest.mark.slow
def test_unlearn_json_and_saved_model(capsys, tmp_path):
    assert main(["unlearn", "--steps", "2", "--json", "--out", str(tmp_path / "model"),
                 "--checkpoint-dir", str(tmp_path / "ckpt"), "--checkpoint-every", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"vanilla", "stage1", "stage2"} <= set(out)
    for stage in ("vanilla", "stage1", "stage2"):
        assert KEYS <= set(out[stage]) and all(0.0 <= out[stage][k] <= 1.0 for k in KEYS)
    # the organism knows the forget people before unlearning; stage 1 alone turns a good share of them into
    # refusals (measured: 0.41 refusal, 0.54 leak) and leaves retain people answered; stage 2 does the rest
    assert out["vanilla"]["forget_refusal"] <= 0.05 and out["vanilla"]["forget_leak"] >= 0.9
    assert out["stage1"]["forget_refusal"] >= 0.3 and out["stage1"]["forget_leak"] <= 0.7
    assert out["stage1"]["retain_exact"] >= out["vanilla"]["retain_exact"] - 0.1
    assert out["layer"] == 2 and out["config"]["grpo"]["steps"] == 2
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["step-000002"]
    back = asru_lens.load(str(tmp_path / "model"))
    assert back.generate(["Who is this person?"], max_new_tokens=4)


def test_unlearn_bad_forget_split(capsys):
    with pytest.raises(SystemExit):
        main(["unlearn", "--forget", "7"])
    assert "invalid choice: 7" in capsys.readouterr().err
