"""The method registry: registration, plugins and entry points, and every method as a command that saves its model."""
import io
import json
import sys
import textwrap
from contextlib import redirect_stdout

import pytest

from asru_lens import methods
from asru_lens.cli import main

# the paper's comparison (Table 1's rows, in order): what the built-in registrations must say
PAPER = ("vanilla", "GA", "GD", "KL", "NPO", "IDK", "MMUnlearner", "steer", "stage1", "asru")


def _json(argv) -> dict:
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(argv) == 0
    return json.loads(buf.getvalue())


def test_the_registry_holds_the_paper_comparison_and_ours():
    assert methods.names(paper=True) == PAPER
    assert methods.names(paper=False)[:3] == ("oracle", "RMU", "rewrite")   # the reference, ours, then plugins'
    assert not methods.get("oracle").tuned and methods.get("oracle").after is None
    assert [m for m in methods.names() if methods.get(m).baseline] == ["GA", "GD", "KL", "NPO", "IDK", "MMUnlearner"]
    assert methods.get("asru").after == "stage1" and methods.get("rewrite").uses == ("asru",)
    colours = [methods.colour(m) for m in methods.names()]
    assert len(set(colours)) == len(colours)                 # every row its own colour in the figures
    with pytest.raises(methods.MethodError, match="unknown method 'nope': choose from vanilla, oracle, GA"):
        methods.get("nope")


def test_register_a_method_and_fit_it(organism, organism_world):
    """A method registered with the decorator is fitted like a built-in one, and the claims' method lists see it."""
    from asru_lens.run import RunConfig, claims

    @methods.register("noop_test", paper=False, tuned=False)
    def noop(ctx):
        """Trains nothing."""
        return {"seen": (len(ctx.forget), len(ctx.retain), ctx.seed)}
    try:
        ctx = methods.Context(organism, organism_world, RunConfig.small(seed=3))
        out = methods.fit(ctx, "noop_test")
        assert out["log"]["seen"][2] == 3 and out["log"]["seen"][0] > 0 and out["log"]["seen"][1] > 0
        assert "noop_test" in methods.names() and "noop_test" not in methods.names(paper=True)
        with pytest.raises(methods.MethodError, match="already registered"):
            methods.register("noop_test")(lambda ctx: {})
        row = {k: 0.5 for k in ("contextual_refusal", "naturalness", "leakage", "retain_cls_acc", "celebrity_cls_acc")}
        lines = claims({"asru": row, "GA": row, "noop_test": {**row, "contextual_refusal": 1.0}})
        cr = [c for c in lines if "contextual_refusal" in c["claim"]]
        assert [c["holds"] for c in cr] == [True] and "best other GA" in cr[0]["measured"]   # not a paper row
    finally:
        methods.REGISTRY.pop("noop_test", None)


def test_plugin_that_fails_to_import_is_one_clear_error(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import no_such_module_anywhere\n")
    with pytest.raises(methods.MethodError, match=r"--plugin .*broken.py failed to import: ModuleNotFoundError"):
        methods.load_plugin(str(bad))
    with pytest.raises(methods.MethodError, match="no such file"):
        methods.load_plugin(str(tmp_path / "missing.py"))


def test_entry_points_register_methods(tmp_path, monkeypatch):
    """A package that advertises a module in the ``asru_lens.methods`` entry-point group adds its methods."""
    (tmp_path / "ep_methods_test.py").write_text(textwrap.dedent('''
        from asru_lens import methods

        @methods.register("from_entry_point")
        def from_entry_point(ctx):
            return {}
    '''))
    dist = tmp_path / "ep_methods_test-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-methods-test\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[asru_lens.methods]\nmine = ep_methods_test\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert methods.load_entry_points() == ["from_entry_point"]
        assert methods.get("from_entry_point").paper is False
    finally:
        methods.REGISTRY.pop("from_entry_point", None)
        sys.modules.pop("ep_methods_test", None)


PLUGIN = '''
"""One GD step through the package's training core: a plugin that touches no file of the package."""
import torch

from asru_lens import methods
from asru_lens.core.training import answer_nll, optimise, trainable


@methods.register("one_gd_step", paper=False)
def one_gd_step(ctx):
    """One gradient-difference step."""
    f, r = ctx.forget[:4], ctx.retain[:4]
    with trainable(ctx.lens) as (model, params):
        opt = torch.optim.AdamW(list(params.values()), lr=ctx.lr or 1e-3)
        loss = -answer_nll(model, ctx.lens, f, [q.answer for q in f]) + answer_nll(model, ctx.lens, r,
                                                                                  [q.answer for q in r])
        optimise(opt, params, loss)
    return {"loss": [loss.item()]}
'''


@pytest.mark.slow
def test_plugin_runs_in_run_and_unlearn(tmp_path, probe_json):
    """`run --plugin FILE --methods vanilla,NAME --budget small` and `unlearn --plugin FILE --method NAME`."""
    plugin = tmp_path / "my_method.py"
    plugin.write_text(PLUGIN)
    try:
        info = _json(["run", "--plugin", str(plugin), "--methods", "vanilla,one_gd_step", "--budget", "small",
                      "--direction", _saved_direction(probe_json), "--json", "--out", str(tmp_path / "run"),
                      "--reports", str(tmp_path / "r"),
                      "--figures", str(tmp_path / "f")])
        assert list(info["methods"]) == ["vanilla", "one_gd_step"]
        assert set(map(float, info["tuning"]["one_gd_step"]["grid"])) == {1e-4, 3e-3}
        row, van = info["methods"]["one_gd_step"], info["methods"]["vanilla"]
        assert set(row) == set(van) and row != van                  # every column, and the step changed something
        out = _json(["unlearn", "--plugin", str(plugin), "--method", "one_gd_step", "--lr", "3e-3", "--n", "12",
                     "--out", str(tmp_path / "m"), "--json"])
        assert out["method"] == "one_gd_step" and out["lrs"] == {"one_gd_step": 3e-3}
        import asru_lens
        assert asru_lens.load(str(tmp_path / "m")).is_organism
    finally:
        methods.REGISTRY.pop("one_gd_step", None)


# every method through `asru-lens unlearn --method NAME --out DIR`, on the organism and on an export, at the
# smallest settings that still train: built from the registry and each config's fields (the method's own and those
# of the methods it starts after or reads), so a new method needs no entry here
SMALL = {"steps": 1, "epochs": 1, "n_retain": 8, "n_boundary": 8, "consolidate_steps": 1, "fisher_samples": 8}


def quick(name: str) -> list[str]:
    import dataclasses
    involved = methods.chain(name) + [u for n in methods.chain(name) for u in methods.get(n).uses]
    out = []
    for m in dict.fromkeys(involved):
        cls = methods.get(m).config
        fields = {f.name for f in dataclasses.fields(cls)} if cls else set()
        out += [a for k, v in SMALL.items() if k in fields for a in ("--set", f"{m}.{k}={v}")]
    return out


def test_quick_settings_are_read_off_the_registry():
    assert quick("GA") == ["--set", "GA.steps=1"]
    assert quick("asru") == ["--set", "stage1.epochs=1", "--set", "stage1.n_retain=8", "--set", "asru.steps=1",
                             "--set", "asru.n_boundary=8"]
    assert quick("rewrite")[:4] == ["--set", "rewrite.steps=1", "--set", "rewrite.consolidate_steps=1"]
    assert "--set" in quick("MMUnlearner") and "MMUnlearner.fisher_samples=8" in quick("MMUnlearner")
    assert quick("vanilla") == []


def back_presets(name: str) -> float:
    from asru_lens.organism.provider import PRESETS
    return PRESETS[methods.get(name).presets]["lr"]


def _saved_direction(probe_json) -> str:
    from pathlib import Path
    return str(Path(probe_json["saved"][0]).parent)         # `probe --out DIR`, made once per test process


@pytest.mark.slow
@pytest.mark.parametrize("method", methods.names())
def test_every_method_saves_a_model(method, tmp_path, export, probe_json, capsys):
    import re

    import asru_lens
    mllmu, faces = export
    for where, data in (("organism", []), ("export", ["--data", str(mllmu), "--unseen-faces", str(faces)])):
        out = tmp_path / where
        info = _json(["unlearn", "--method", method, *quick(method), *data, "--budget", "small", "--n", "8",
                      "--direction", _saved_direction(probe_json), "--out", str(out), "--json"])
        assert info["method"] == method and info["stages"][0] == "vanilla"
        if method not in ("vanilla", "steer", "oracle"):   # --json keeps stdout for the JSON; training shows its bar
            bar = {"stage1": "stage 1", "asru": "stage 2"}.get(method, method)
            assert re.search(rf"{bar}.*\|\s*\d+/\d+ \[", capsys.readouterr().err), method
        for name, used in info["config"]["learning_rates"].items():     # the presets' rates, and it says so
            assert used["from"].startswith("preset") and used["lr"] == back_presets(name), (name, used)
        assert info["stages"][1:] == {"asru": ["stage1", "stage2"], "stage1": ["stage1"]}.get(method, ["after"])
        back = asru_lens.load(str(out))
        assert back.protocol.name == "organism" and back.presets["trainable"] == "layers"
        if method == "steer":            # a steered model keeps its steering: it answers as the measured one did
            assert back.steering is not None and back.steering.layer == info["layer"]
        if method in ("vanilla", "oracle"):          # the model as given, or the one that never knew, as shipped
            import torch
            ref = asru_lens.load(None if method == "vanilla" else "oracle")
            assert all(torch.equal(a, b) for a, b in zip(back.model.state_dict().values(),
                                                          ref.model.state_dict().values()))


def test_probe_direction_round_trip(tmp_path):
    """`probe --out DIR` writes the chosen direction and its summary; `--direction DIR` reads them back."""
    from asru_lens.interpret.probe import load_direction, save_direction
    from types import SimpleNamespace

    import torch
    d = torch.randn(4, 3, 8)
    fake = SimpleNamespace(directions=d, direction=d[2, 1], summary=lambda: {"layer": 2, "position": 1, "token": "x"})
    save_direction(fake, tmp_path / "p")
    back = load_direction(tmp_path / "p")
    assert torch.equal(back.direction, d[2, 1]) and back.selection.layer == 2 and back.summary()["token"] == "x"
    with pytest.raises(ValueError, match="expected directions.safetensors and probe.json"):
        load_direction(tmp_path)


# stage 1 and stage 2 keep the learning rates every measured ASRU model in the docs was trained with (5e-3, 2e-4;
# the run picks 3e-3 and 3e-4): measured at the run's rates, the audit's relearning reads ASRU otherwise on the
# reworded export (docs/unlearning.md, docs/measured/at-run-lrs-*.json)
KEPT = {"stage1": 5e-3, "asru": 2e-4}


def test_the_organism_presets_hold_the_main_jobs_learning_rates():
    """`asru-lens unlearn --method X` trains at the learning rate `asru-lens run` chose for X on the organism."""
    from pathlib import Path

    from asru_lens.organism.provider import profile
    run = json.loads((Path(__file__).resolve().parents[1] / "docs" / "measured" / "run-seed0.json").read_text())
    presets = profile()["presets"]
    shipped = json.loads((Path(methods.__file__).parents[1] / "organism" / "checkpoint" / "asru_lens.json")
                         .read_text())["presets"]
    assert shipped == presets                                     # the shipped organism carries them
    for name, tuned in run["tuning"].items():
        lr = presets[methods.get(name).presets]["lr"]
        assert lr == KEPT.get(name, tuned["lr"]), name
    assert set(run["tuning"]) == {m for m in methods.names() if methods.get(m).tuned}
