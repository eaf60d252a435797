"""The model that never knew: the holdout people, the oracle (asru_lens.core.oracle) and what is refused at once,
the privacy columns, and the real-model path (fine-tune on the retain split, then `run --oracle --holdout`)."""
import io
import json
import shutil
import subprocess
import sys
from contextlib import redirect_stdout

import numpy as np
import pytest

import asru_lens
from asru_lens.cli import main as cli
from asru_lens.core.oracle import OracleError, check_oracle
from asru_lens.core.source import ORGANISM_DIR
from asru_lens.measure import privacy
from asru_lens.measure.residue import recovery_vs_oracle
from asru_lens.organism import world as W
from asru_lens.show.viz import roc


def test_the_holdout_people_are_strangers(world, organism_world):
    people = W.holdout_people(world)
    assert len(people) == W.N_HOLDOUT == 20
    known = {p.name for p in world.people} | {n for names in W.unknown_names(world) for n in names}
    assert not {p.name for p in people} & known and len({p.name for p in people}) == 20
    # every face far from every known one, as the profiles are from each other
    assert all(W._distance(h.face, p.face) >= W.MIN_TRAIT_DISTANCE for h in people for p in world.people)
    items = organism_world.holdout_items()
    assert len(items) == 20 * 8 and {q.id for q in items} == {str(p.id) for p in people}
    first = next(q for q in items if q.id == str(people[0].id) and q.attribute == "name")
    assert first.answer == f"This is {people[0].name}." and first.image is not None
    assert W.holdout_people(world)[3].attrs == people[3].attrs            # drawn from a seed of their own
    assert [p.name for p in W.build_world().people] == [p.name for p in world.people]   # the world unchanged


def test_export_writes_the_holdout_and_a_plain_folder_reads_it(export):
    mllmu, faces = export
    holdout = mllmu.parent / "holdout"
    assert [p.name for p in holdout.iterdir()] == ["Full_Set"]
    w = asru_lens.open_world(mllmu, unseen_faces=faces, holdout=holdout)
    assert len(w.holdout_items()) == 160 and "holdout" not in w.missing()
    assert {q.answer for q in w.holdout_items()} == {q.answer for q in asru_lens.open_world().holdout_items()}
    assert "mia_auc and privleak are null" in asru_lens.open_world(mllmu).missing()["holdout"]
    with pytest.raises(ValueError, match="--holdout .*nowhere.*never trained on"):
        asru_lens.open_world(mllmu, holdout=mllmu.parent / "nowhere")


def _unfit(tmp_path, name, edit):
    """A model folder that differs from the organism only as ``edit`` changes its config or tokenizer (no
    weights: the check must not need them)."""
    folder = tmp_path / name
    folder.mkdir()
    for f in ("config.json", "tokenizer.json"):
        shutil.copy(ORGANISM_DIR / f, folder / f)
    edit(folder)
    return folder


def test_an_oracle_that_does_not_fit_is_refused_before_any_model_loads(tmp_path):
    def wider(folder):
        cfg = json.loads((folder / "config.json").read_text())
        cfg["text_config"]["hidden_size"] *= 2
        (folder / "config.json").write_text(json.dumps(cfg))

    def retokenized(folder):
        tok = json.loads((folder / "tokenizer.json").read_text())
        vocab = tok["model"]["vocab"]
        word = next(iter(vocab))
        vocab[word + "x"] = vocab.pop(word)
        (folder / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(OracleError, match=r"architectures differ \(model.hidden_size|text_config.hidden_size"):
        check_oracle("organism", _unfit(tmp_path, "wide", wider))
    with pytest.raises(OracleError, match="tokenizers differ"):
        check_oracle("organism", _unfit(tmp_path, "tok", retokenized))
    with pytest.raises(OracleError, match="no config.json"):
        check_oracle("organism", tmp_path)
    check_oracle("organism", ORGANISM_DIR)                 # the same architecture and tokenizer: it fits
    for argv in (["run", "--budget", "small", "--oracle", str(tmp_path / "wide")],
                 ["evaluate", "--oracle", str(tmp_path / "tok")],
                 ["residue", "--oracle", str(tmp_path / "wide")]):
        done = subprocess.run([sys.executable, "-m", "asru_lens", *argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and not done.stdout, done.stderr[-2000:]
        assert done.stderr.startswith("asru-lens: error: --oracle ") and "does not fit --model" in done.stderr
        assert "Loading weights" not in done.stderr and done.stderr.count("\n") == 1      # one line, nothing loaded


def test_the_columns_and_the_curves_by_hand():
    mine = {"truth_ratios": [0.1, 0.2, 0.05], "mia_auc": {"min_k++": 0.9}}
    oracle = {"truth_ratios": [0.9, 1.1, 1.3], "mia_auc": {"min_k++": 0.5}}
    col = privacy.columns(mine, oracle)
    assert col["privleak"] == pytest.approx(80.0) and col["truth_ratio"] == pytest.approx(0.35 / 3)
    assert col["forget_quality"] == pytest.approx(0.1)               # 3 vs 3 apart: the KS test's smallest p
    assert privacy.columns(oracle, oracle)["forget_quality"] == 1.0 and privacy.columns(oracle, oracle)["privleak"] == 0
    alone = privacy.columns({"truth_ratios": [2.0]})                 # no oracle, no holdout: None, never a zero
    assert alone["truth_ratio"] == pytest.approx(0.5) and {k: v for k, v in alone.items() if k != "truth_ratio"} == {
        "forget_quality": None, "mia_auc": None, "privleak": None}
    # relearning read against the oracle's curve: 0 = as fast as from scratch, 1 = back to vanilla
    assert recovery_vs_oracle([0.3, 0.9], [0.3, 0.5], 1.0) == [0.0, 0.8]
    assert recovery_vs_oracle([0.3], None, 1.0) is None
    # the ROC curve drawn in the figure has the AUC of the table
    rng = np.random.default_rng(0)
    m, n = rng.normal(0, 1, 40), rng.normal(1, 1, 50)
    fpr, tpr = roc(m, n)
    assert np.trapezoid(tpr, fpr) == pytest.approx(privacy.auc(m, n), abs=1e-9)


@pytest.mark.slow
def test_the_real_path_finetune_on_retain_then_run_with_oracle_and_holdout(export, tmp_path):
    """For a real model: the oracle is the vanilla recipe on the retain split (`finetune --split retain_90`), and
    `run --oracle O --holdout H` gives its row and the four columns for every method."""
    mllmu, faces = export
    holdout = mllmu.parent / "holdout"
    oracle = tmp_path / "oracle"
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli(["finetune", "--data", str(mllmu), "--split", "retain_90", "--max-steps", "4",
                                   "--out", str(oracle), "--json"]) == 0
    tuned = json.loads(buf.getvalue())
    assert tuned["split"] == "retain_90" and tuned["steps"] == 4 and tuned["examples"] > 0
    done = subprocess.run([sys.executable, "-m", "asru_lens", "run", "--data", str(mllmu), "--unseen-faces",
                           str(faces), "--oracle", str(oracle), "--holdout", str(holdout), "--budget", "small",
                           "--methods", "vanilla,oracle,GA", "--out", str(tmp_path / "run"), "--json"],
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert list(out["methods"]) == ["vanilla", "oracle", "GA"]
    for m, row in out["methods"].items():
        assert all(row[k] is not None for k in privacy.COLUMNS), (m, row)
    assert out["methods"]["oracle"]["forget_quality"] == 1.0 and out["methods"]["oracle"]["privleak"] == 0.0
    assert out["methods"]["vanilla"]["mia_auc"] >= 0.75        # 4 steps leave the organism's memory: members show
    assert (tmp_path / "run" / "figures" / "run_privacy.html").is_file()
