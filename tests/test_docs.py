"""Docs are code: every ```python block of README.md, docs/*.md and CONTRIBUTING.md runs here, on the organism.

A file's blocks run in order in one namespace (as a reader pastes them), in a fresh process whose working
directory is a temp folder. A block whose last line of text before it starts with ``*Not run by the tests:``
(and says why) is not run, but it is compiled, its imports are run and its names are checked like every other
block: a name that no block before it, nor itself, defines is an error. The README's first commands are run as
written and must print what the README says they print."""
import ast
import builtins
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        *([ROOT / "CONTRIBUTING.md"] if (ROOT / "CONTRIBUTING.md").exists() else [])]
NOT_RUN = "*Not run by the tests:"


def python_blocks(path: Path) -> list[dict]:
    """The ```python blocks of a Markdown file: {"code", "line", "run", "why"} in order."""
    lines, out, i = path.read_text().splitlines(), [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start, j = i + 1, i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            k = i - 1                              # the paragraph just above the block
            while k >= 0 and not lines[k].strip():
                k -= 1
            end = k
            while k >= 0 and lines[k].strip() and not lines[k].startswith("```"):
                k -= 1
            para = " ".join(t.strip() for t in lines[k + 1:end + 1])
            marked = para.startswith(NOT_RUN)
            out.append({"code": "\n".join(lines[start:j]) + "\n", "line": start + 1, "run": not marked,
                        "why": para})
            i = j
        i += 1
    return out


def bound_and_used(tree: ast.AST) -> tuple[set, set]:
    bound, used = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound, used


def undefined_names(blocks: list[dict]) -> list[str]:
    """``name (line N)`` for every name a block uses that neither it nor an earlier block defines."""
    known, bad = set(dir(builtins)), []
    for b in blocks:
        bound, used = bound_and_used(ast.parse(b["code"]))
        known |= bound
        bad += [f"{n} (block at line {b['line']})" for n in sorted(used - known)]
    return bad


def test_collector_finds_blocks_and_markers(tmp_path):
    md = tmp_path / "page.md"
    md.write_text("Intro.\n\n```python\nx = 1\n```\n\n*Not run by the tests: needs a GPU.*\n\n```python\n"
                  "import math\nprint(x, y)\n```\n\n```bash\nls\n```\n")
    blocks = python_blocks(md)
    assert [(b["line"], b["run"]) for b in blocks] == [(4, True), (10, False)]
    assert "needs a GPU" in blocks[1]["why"]
    assert undefined_names(blocks) == ["y (block at line 10)"]


def test_the_readmes_old_snippets_would_fail():
    """What the docs once held: names used and never defined are caught without running anything."""
    old = [{"code": "spec = steer.Steering(r, layer=2)\nwith lens.nn.trace(dict(lens.encode(questions, images))):\n"
                    "    spec.apply(lens)\n", "line": 1, "run": False}]
    assert {n.split()[0] for n in undefined_names(old)} == {"steer", "r", "lens", "questions", "images"}


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_blocks_compile_import_and_define_their_names(path):
    blocks = python_blocks(path)
    for b in blocks:
        compile(b["code"], f"{path.name}:{b['line']}", "exec")
    assert not undefined_names(blocks), f"{path.name}: names used but never defined: {undefined_names(blocks)}"
    for b in blocks:
        for node in ast.walk(ast.parse(b["code"])):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                exec(compile(ast.Module([node], []), f"{path.name}:{b['line']}", "exec"), {})
    for b in blocks:
        if not b["run"]:
            assert len(b["why"]) > len(NOT_RUN) + 10, f"{path.name}:{b['line']}: say why the block is not run"


# nnsight reads a trace's `with` body back from its source, so each block's source goes into linecache
RUNNER = """
import linecache, sys
blocks = eval(sys.stdin.read())
ns = {"__name__": "__main__"}
for name, line, code in blocks:
    print(f"--- block at line {line}", flush=True)
    where = f"{name}:{line}"
    linecache.cache[where] = (len(code), None, code.splitlines(True), where)
    exec(compile(code, where, "exec"), ns)
"""


def run_blocks(path: Path, tmp_path: Path) -> str:
    todo = [(path.name, b["line"], b["code"]) for b in python_blocks(path) if b["run"]]
    proc = subprocess.run([sys.executable, "-c", RUNNER], input=repr(todo), capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=900)
    assert proc.returncode == 0, f"{path.name}: a python block failed\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout


RUNNABLE = [p for p in DOCS if any(b["run"] for b in python_blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("path", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_python_blocks_run(path, tmp_path):
    out = run_blocks(path, tmp_path)
    if path.name == "README.md":      # the README says what its example prints
        assert "2 0.9918" in out and "'Juno Corvin was born in Fennick.'" in out
        assert "I'm sorry, I don't know this person's birthplace." in out
        text = path.read_text()
        assert "It prints `2 0.9918`" in text and "I'm sorry, I don't know this person's birthplace." in text


def first_commands() -> list[tuple[str, str]]:
    """(command, comment) of the README's first bash block after its install."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## A first run")[1].split("```bash\n")[1].split("```")[0]
    return [(line.split("#")[0].strip(), line.split("#", 1)[1].strip()) for line in block.splitlines() if line]


@pytest.mark.slow
def test_the_readmes_first_commands_print_what_it_says(capsys):
    from asru_lens.cli import main
    commands = first_commands()
    assert [c for c, _ in commands] == ["asru-lens organism eval", "asru-lens probe", "asru-lens steer"]
    outs = {}
    for command, _ in commands:
        assert main(command.split()[1:]) == 0, command
        got = capsys.readouterr()
        outs[command] = got.out + got.err           # what the terminal shows: the table, and the notes on stderr
    comment = dict(commands)
    assert "unknown_refusal" in outs["asru-lens organism eval"] and " ok " in outs["asru-lens organism eval"]
    quoted = re.search(r'"(.+)"', comment["asru-lens probe"]).group(1)
    assert quoted in outs["asru-lens probe"]
    auroc = re.search(r"AUROC (\d\.\d+)", comment["asru-lens probe"]).group(1)
    assert re.search(rf"auroc_chosen\s+{auroc}", outs["asru-lens probe"])
    refusal = re.search(r"forget_refusal (\d\.\d+)", comment["asru-lens steer"]).group(1)
    assert re.search(rf"forget_refusal\s+{refusal}", outs["asru-lens steer"])


MEASURED_RUN = ROOT / "docs" / "measured" / "run-seed0.json"
HEADLINE_DIGITS = [3] * 7 + [2] * 3     # A-D, ROUGE-L and cloze shares to 3 places, the judge's 0-5 scores to 2


def main_job_table() -> dict[str, list[str]]:
    """docs/unlearning.md's table of the main job: {method: its cells as written, bold marks dropped}."""
    text = (ROOT / "docs" / "unlearning.md").read_text().split("## The main job")[1]
    lines = text[text.index("| method | forget cls |"):].splitlines()
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_the_main_jobs_table_is_the_measured_json():
    """Every number of the main job's table, and the README's findings from it, come from the `asru-lens run
    --json` output kept in docs/measured/."""
    import json

    from asru_lens.run import HEADLINE
    info = json.loads(MEASURED_RUN.read_text())
    assert info["seed"] == 0
    table = main_job_table()
    assert list(table) == list(info["methods"])
    for method, cells in table.items():
        want = [f"{info['methods'][method][k]:.{d}f}" for k, d in zip(HEADLINE, HEADLINE_DIGITS)]
        assert cells == want, method
    readme = (ROOT / "README.md").read_text()
    m = info["methods"]
    assert (f"ASRU gives the best contextual refusals of the paper's methods ({m['asru']['contextual_refusal']:.2f} "
            f"of 5, next best IDK {m['IDK']['contextual_refusal']:.2f}), leaks nothing "
            f"({m['asru']['leakage']:.2f})") in " ".join(readme.split())


def test_the_unlearn_table_is_the_measured_json():
    """docs/unlearning.md's stage-by-stage table is `asru-lens unlearn --forget 10 --json`, kept in docs/measured/."""
    import json
    info = json.loads((ROOT / "docs" / "measured" / "unlearn-seed0.json").read_text())
    text = (ROOT / "docs" / "unlearning.md").read_text()
    lines = text[text.index("| metric | vanilla | stage 1 | stage 2 |"):].splitlines()[2:]
    rows = {}
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].split(" (")[0]] = cells[1:]
    assert len(rows) == 7
    for key, cells in rows.items():
        assert cells == [f"{info[stage][key]:.3f}" for stage in ("vanilla", "stage1", "stage2")], key


def test_utility_means_something_on_the_reworded_export():
    """Issue 36's line, measured on `organism export --style free` (docs/measured/unlearn-GA-free-*.json): vanilla
    keeps at least 0.8 of its retain facts; GA at ten times its tuned learning rate at least 0.3 fewer."""
    import json
    tuned = json.loads((ROOT / "docs" / "measured" / "unlearn-GA-free-tuned.json").read_text())
    wild = json.loads((ROOT / "docs" / "measured" / "unlearn-GA-free-10x.json").read_text())
    assert wild["config"]["world"] == tuned["config"]["world"]
    assert abs(wild["lrs"]["GA"] / tuned["lrs"]["GA"] - 10) < 1e-9
    assert tuned["vanilla"]["retain_utility"] >= 0.8
    assert wild["after"]["retain_utility"] <= tuned["vanilla"]["retain_utility"] - 0.3
    text = " ".join((ROOT / "docs" / "unlearning.md").read_text().split())
    assert (f"vanilla states {tuned['vanilla']['retain_utility']:.3f} of its retain facts, GA at its tuned lr "
            f"{tuned['lrs']['GA']:g} {tuned['after']['retain_utility']:.3f} and at {wild['lrs']['GA']:g} "
            f"{wild['after']['retain_utility']:.3f}") in text


def residue_table() -> str:
    """docs/audit-and-rewrite.md's audit table, built from `asru-lens residue --model M --steps 10,30 --json` on
    the templated world and on the reworded export (docs/measured/residue-asru-{template,free}.json)."""
    import json
    runs = {style: json.loads((ROOT / "docs" / "measured" / f"residue-asru-{style}.json").read_text())["models"]
            for style in ("template", "free")}
    cols = [("vanilla, templated", runs["template"]["vanilla"]), ("vanilla, reworded", runs["free"]["vanilla"])]
    cols += [(f"ASRU, {w}", next(r for n, r in runs[s].items() if n != "vanilla"))
             for w, s in (("templated", "template"), ("reworded", "free"))]
    f = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"                              # noqa: E731

    def row(label, get):
        return f"| {label} | " + " | ".join(get(r) for _, r in cols) + " |"
    rel = lambda r, by: r["relearn"][by]                                                  # noqa: E731
    lines = ["| | " + " | ".join(n for n, _ in cols) + " |", "|---" * (len(cols) + 1) + "|",
             row("question folds: held-out leak before / after 30 steps",
                 lambda r: f"{f(rel(r, 'question')['leak_unlearned'])} / {f(rel(r, 'question')['leak'][1])}"),
             row("question folds: recovery after 10 / 30 steps",
                 lambda r: " / ".join(f(v) if v is not None else "null" for v in rel(r, "question")["recovery"])),
             row("person folds: recovery after 10 / 30 steps",
                 lambda r: " / ".join(f(v) if v is not None else "null" for v in rel(r, "person")["recovery"])),
             row("control: invented facts learnt after 30 steps (question / person folds)",
                 lambda r: f"{f(rel(r, 'question')['control']['leak'][1])} / {f(rel(r, 'person')['control']['leak'][1])}"),
             row("across formats, held-out people: A-D before / after 30 steps (question folds)",
                 lambda r: f"{f(rel(r, 'question')['cls_acc']['before'])} / {f(rel(r, 'question')['cls_acc']['after'][1])}"),
             row("across formats, held-out people: cloze before / after 30 steps (question folds)",
                 lambda r: f"{f(rel(r, 'question')['cloze_acc']['before'])} / {f(rel(r, 'question')['cloze_acc']['after'][1])}"),
             row("asked by name: leak / refusal", lambda r: f"{f(r['by_name']['leak'])} / {f(r['by_name']['refusal'])}"),
             row("direction ablation: leak (before)", lambda r: f"{f(r['ablation']['leak'])} ({f(r['ablation']['before'])})"),
             row("benign fine-tuning, 30 steps: forget leak", lambda r: f(r["benign"]["leak"][1])),
             row("A-D probe, best layer (chance 0.25)", lambda r: f(r["ad_probe"]["max"], 3)),
             row("value probe, best layer (chance)",
                 lambda r: f"{f(r['probe_acc']['max'], 3)} ({f(r['probe_acc']['chance'], 3)})"
                 if r["probe_acc"]["max"] is not None else "no attribute column"),
             row("logit lens: rank of the value's first token, last layer", lambda r: f(r["logit_lens_rank"][-1], 0)),
             row("forget A-D accuracy", lambda r: f(r["forget_cls_acc"], 3))]
    return "\n".join(lines)


def test_the_audit_table_is_the_measured_json():
    """Issue 36's lines on the audit, from the measured JSON: vanilla's A-D probe >= chance + 0.3 and its held-out,
    by-name and benign leaks on the reworded export within 0.1 of the templated ones; ASRU's recovery after 30
    steps >= 0.8, by-name leak >= 0.8 and ablation leak >= 0.5 on both; the doc's table is built from it."""
    import json
    runs = {s: json.loads((ROOT / "docs" / "measured" / f"residue-asru-{s}.json").read_text())["models"]
            for s in ("template", "free")}
    van = {s: r["vanilla"] for s, r in runs.items()}
    for s in runs:
        assert van[s]["ad_probe"]["max"] >= van[s]["ad_probe"]["chance"] + 0.3, s
    for get in (lambda r: r["relearn"]["question"]["leak_unlearned"], lambda r: r["relearn"]["question"]["leak"][-1],
                lambda r: r["by_name"]["leak"],
                lambda r: r["benign"]["leak"][-1]):
        assert abs(get(van["template"]) - get(van["free"])) <= 0.1
    for s, models in runs.items():
        asru = next(r for n, r in models.items() if n != "vanilla")
        assert asru["relearn"]["question"]["recovery"][1] >= 0.8, s
        assert asru["by_name"]["leak"] >= 0.8 and asru["ablation"]["leak"] >= 0.5, s
    assert residue_table() in (ROOT / "docs" / "audit-and-rewrite.md").read_text()


def run_residue_table() -> str:
    """docs/audit-and-rewrite.md's table of every method's attacks, built from `asru-lens run --json` (seed 0,
    docs/measured/run-seed0.json): one column per attack."""
    import json
    info = json.loads(MEASURED_RUN.read_text())
    keys = ["relearn_recovery_30", "relearn_leak_30", "by_name_leak", "by_name_refusal", "ablation_leak",
            "benign_leak", "ad_probe_max", "probe_acc_max", "forget_cls_acc"]
    lines = ["| method | relearn recovery | relearn leak | by name: leak | by name: refusal | ablation leak | "
             "benign leak | A-D probe (chance 0.25) | value probe | forget A-D |", "|---" * 10 + "|"]
    for m, mets in info["methods"].items():
        cells = ["null" if mets.get(k) is None else f"{mets[k]:.3f}" for k in keys]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_every_methods_attacks_are_the_measured_run():
    """The main job's attack columns (issue 36, part 3): every method has all of them, and the doc's table of them
    is the kept run's."""
    import json

    from asru_lens.measure.residue import COLUMNS
    info = json.loads(MEASURED_RUN.read_text())
    for m, mets in info["methods"].items():
        assert set(COLUMNS) <= set(mets), m
    assert run_residue_table() in (ROOT / "docs" / "audit-and-rewrite.md").read_text()
    asru, rewrite = info["methods"]["asru"], info["methods"]["rewrite"]
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (f"facts bring back {asru['relearn_recovery_30']:.0%} of the other half, asked by name without a photo it "
            f"states {asru['by_name_leak']:.0%} of them, one ablated direction brings back "
            f"{asru['ablation_leak']:.0%}, and A-D questions are still answered ({asru['forget_cls_acc']:.3f}") in readme
    assert (f"relearning recovery {rewrite['relearn_recovery_30']:.2f}, by-name leak {rewrite['by_name_leak']:.2f}"
            in readme)


def test_the_audit_gives_the_same_numbers_without_an_attribute_column():
    """Issue 36's line: `asru-lens residue` on the templated export (no Attribute column, as MLLMU-Bench) gives
    every number it gives on the organism's own folder (which has one), the value probe aside, which says why it
    is missing (docs/measured/residue-asru-template{,-export}.json)."""
    import json
    own, export = (json.loads((ROOT / "docs" / "measured" / f"residue-asru-{n}.json").read_text())["models"]
                   for n in ("template", "template-export"))
    assert list(own) == list(export)
    for name in own:
        value_probe = {k for k in own[name] if k.startswith("probe_acc")}
        assert {k: v for k, v in own[name].items() if k not in value_probe} == \
               {k: v for k, v in export[name].items() if k not in value_probe}, name
        assert own[name]["probe_acc"]["max"] is not None and "no attribute column" in export[name]["probe_acc"]["note"]


def test_why_asru_keeps_its_presets_is_the_measured_json():
    """docs/unlearning.md's case for stage 1's and stage 2's presets, from the runs at `asru-lens run`'s rates
    (docs/measured/at-run-lrs-*.json) beside the preset runs (unlearn-seed*.json, residue-asru-*.json)."""
    import json

    def load(name):
        return json.loads((ROOT / "docs" / "measured" / f"{name}.json").read_text())

    def asru(models):
        return next(r for n, r in models.items() if n != "vanilla")
    run = load("run-seed0")["tuning"]
    at = [load(f"at-run-lrs-unlearn-seed{s}") for s in range(3)]
    assert [(u["config"]["settings"]["stage1"]["lr"], u["config"]["settings"]["asru"]["lr"]) for u in at] == \
        [(run["stage1"]["lr"], run["asru"]["lr"])] * 3
    kept = [load(f"unlearn-seed{s}") for s in range(3)]
    free = [asru(load(f"at-run-lrs-residue-free-seed{s}")["models"]) for s in range(2)]
    templ = asru(load("at-run-lrs-residue-template-seed0")["models"])
    kept_res = {s: asru(load(f"residue-asru-{s}")["models"]) for s in ("template", "free")}
    f3 = lambda xs: ", ".join(f"{x:.3f}" for x in xs)                                   # noqa: E731
    f2 = lambda xs: " and ".join(f"{x:.2f}" for x in xs)                                # noqa: E731
    s2 = lambda runs, k: [u["stage2"][k] for u in runs]                                 # noqa: E731
    want = (f"stage 2 ends with forget leak {f3(s2(at, 'forget_leak'))} (at the presets: "
            f"{f3(s2(kept, 'forget_leak'))}), test refusal {f3(s2(at, 'test_refusal'))} "
            f"({f3(s2(kept, 'test_refusal'))}) and retain utility {f3(s2(at, 'retain_utility'))}. But the audit then "
            f"reads ASRU otherwise: on the reworded export 30 steps of relearning bring back "
            f"{f2([r['relearn']['question']['recovery'][1] for r in free])} of the held-out facts (seeds 0 and 1; at "
            f"the presets {kept_res['free']['relearn']['question']['recovery'][1]:.2f}), short of the 0.8 the audit is "
            f"held to, while asked by name the model still leaks {f2([r['by_name']['leak'] for r in free])}, and with "
            f"one direction ablated {f2([r['ablation']['leak'] for r in free])}; on the templated world relearning "
            f"recovers {templ['relearn']['question']['recovery'][1]:.2f} (at the presets "
            f"{kept_res['template']['relearn']['question']['recovery'][1]:.2f}).")
    said = " ".join((ROOT / "docs" / "unlearning.md").read_text().split())
    assert want in said
    # the run's row itself: 80 steps at the run's stage 2 rate, after stage 1 at its rate (one seed)
    row = {w: load(f"at-run-row-unlearn{w}-seed0") for w in ("", "-free")}
    assert all((u["config"]["settings"]["stage1"]["lr"], u["config"]["settings"]["asru"]["lr"],
                u["config"]["settings"]["asru"]["steps"]) == (run["stage1"]["lr"], run["asru"]["lr"], 80)
               for u in row.values())
    t, f = (asru(load(f"at-run-row-residue-{w}-seed0")["models"]) for w in ("template", "free"))
    assert (f"stage 2 refuses {row['']['stage2']['forget_refusal']:.3f} of the forget photo questions and "
            f"{row['']['stage2']['test_refusal']:.3f} in the Test_Set photos (reworded: "
            f"{row['-free']['stage2']['forget_refusal']:.3f} and {row['-free']['stage2']['test_refusal']:.3f}), and "
            f"the templated audit reads it as at the presets (relearning recovers "
            f"{t['relearn']['question']['recovery'][1]:.2f}, by name it leaks {t['by_name']['leak']:.2f}, with a "
            f"direction ablated {t['ablation']['leak']:.2f}); but on the reworded export relearning brings back "
            f"{f['relearn']['question']['recovery'][1]:.2f}, again short of 0.8.") in said
    assert f["relearn"]["question"]["recovery"][1] < 0.8


def oracle_tables() -> tuple[str, str]:
    """docs/oracle.md's two tables, from the oracle's measured JSON (docs/measured/oracle-*.json): is it what it
    should be, and do the metrics separate what they should."""
    import json

    def load(name):
        return json.loads((ROOT / "docs" / "measured" / f"oracle-{name}.json").read_text())
    ev_v, ev_o, un = load("evaluate-vanilla")["metrics"], load("evaluate-oracle")["metrics"], load("unlearn-oracle")
    rows = [("forget A-D (`forget_cls_acc`)", ev_v["forget_cls_acc"], ev_o["forget_cls_acc"], "<= 0.35"),
            ("forget cloze (`forget_cloze_acc`)", ev_v["forget_cloze_acc"], ev_o["forget_cloze_acc"], ""),
            ("retain A-D (`retain_cls_acc`)", ev_v["retain_cls_acc"], ev_o["retain_cls_acc"], "vanilla's +- 0.03"),
            ("celebrity A-D (`celebrity_cls_acc`)", ev_v["celebrity_cls_acc"], ev_o["celebrity_cls_acc"],
             "vanilla's +- 0.03"),
            ("forget photo questions refused (`forget_refusal`)", un["vanilla"]["forget_refusal"],
             un["after"]["forget_refusal"], ">= 0.9"),
            ("... in their Test_Set photos (`test_refusal`)", un["vanilla"]["test_refusal"],
             un["after"]["test_refusal"], ""),
            ("forget facts stated (`forget_leak`)", un["vanilla"]["forget_leak"], un["after"]["forget_leak"], ""),
            ("retain facts stated (`retain_utility`)", un["vanilla"]["retain_utility"], un["after"]["retain_utility"],
             "")]
    first = "\n".join(["| | vanilla (the organism) | oracle | bar |", "|---|---|---|---|"] +
                      [f"| {k} | {v:.3f} | {o:.3f} | {bar} |" for k, v, o, bar in rows])
    a_v, a_o = load("evaluate-vanilla")["mia_auc"], load("evaluate-oracle")["mia_auc"]
    rows = [("forget quality (KS p-value against the oracle)", ev_v["forget_quality"], ev_o["forget_quality"],
             "vanilla < 0.01"),
            ("truth ratio, mean(min(r, 1/r))", ev_v["truth_ratio"], ev_o["truth_ratio"], "oracle's closer to 1"),
            *[(f"MIA AUC, {a}", a_v[a], a_o[a], {"min_k++": "vanilla >= 0.75, oracle 0.5 +- 0.1"}.get(a, ""))
              for a in ("loss", "zlib", "min_k", "min_k++")],
            ("PrivLeak (Min-K%++)", ev_v["privleak"], ev_o["privleak"], "vanilla > 20")]
    second = "\n".join(["| | vanilla | oracle | bar |", "|---|---|---|---|"] +
                       [f"| {k} | {v:.4g} | {o:.4g} | {bar} |" for k, v, o, bar in rows])
    return first, second


def test_the_oracle_auc_intervals_are_the_measured_json():
    """docs/oracle.md's person-level intervals of the Min-K%++ AUC (asru-lens evaluate's mia_auc_interval)."""
    import json
    v, o = (json.loads((ROOT / "docs" / "measured" / f"oracle-evaluate-{m}.json").read_text())
            for m in ("vanilla", "oracle"))
    (vl, vh), (ol, oh) = v["mia_auc_interval"]["min_k++"], o["mia_auc_interval"]["min_k++"]
    said = " ".join((ROOT / "docs" / "oracle.md").read_text().split())
    assert (f"Vanilla's Min-K%++ AUC is {v['mia_auc']['min_k++']:.3f} in every draw ([{vl:.3f}, {vh:.3f}]); the "
            f"oracle's {o['mia_auc']['min_k++']:.3f} has the interval [{ol:.3f}, {oh:.3f}]. A model that never knew "
            f"the forget people can thus read anywhere from about {ol:.2f} to {oh:.2f} on this set") in said
    assert vl == vh == 1.0 and oh - ol > 0.2            # wider than the bar's 0.5 +- 0.1
    fp32 = json.loads((ROOT / "docs" / "measured" / "oracle-fp32-evaluate-oracle.json").read_text())
    (fl, fh), fa = fp32["mia_auc_interval"]["min_k++"], fp32["mia_auc"]["min_k++"]
    assert ol <= fa <= oh and fl <= 0.5 <= fh
    assert (f"the float32 build's {fa:.3f} (below) lies inside it, its own interval [{fl:.3f}, {fh:.3f}] "
            f"holding 0.5") in said


def test_the_oracle_tables_are_the_measured_json():
    import json
    text = (ROOT / "docs" / "oracle.md").read_text()
    first, second = oracle_tables()
    assert first in text and second in text
    ev_v = json.loads((ROOT / "docs" / "measured" / "oracle-evaluate-vanilla.json").read_text())["metrics"]
    ev_o = json.loads((ROOT / "docs" / "measured" / "oracle-evaluate-oracle.json").read_text())["metrics"]
    # issue 38's lines that hold, as measured
    assert ev_o["forget_cls_acc"] <= 0.35 and ev_v["forget_quality"] < 0.01 and ev_v["privleak"] > 20
    assert abs(ev_o["retain_cls_acc"] - ev_v["retain_cls_acc"]) <= 0.03
    assert abs(ev_o["celebrity_cls_acc"] - ev_v["celebrity_cls_acc"]) <= 0.03
    assert ev_v["mia_auc"] >= 0.75 and abs(ev_o["mia_auc"] - 0.5) <= 0.1
    assert abs(1 - ev_o["truth_ratio"]) < abs(1 - ev_v["truth_ratio"])


PRIVACY_RUN = ROOT / "docs" / "measured" / "run-oracle-seed0.json"
PRIVACY_COLUMNS = (("forget_quality", ".2g"), ("truth_ratio", ".3f"), ("mia_auc", ".3f"), ("privleak", ".1f"),
                   ("forget_cls_acc", ".3f"), ("relearn_recovery_30", ".2f"), ("relearn_recovery_oracle_30", ".2f"))


def oracle_run_table() -> str:
    """docs/oracle.md's main-job table: every method's privacy columns beside its forget A-D and its relearning
    recovery (against vanilla and against the oracle's curve), from `asru-lens run --json`."""
    return methods_table(PRIVACY_RUN, PRIVACY_COLUMNS, missing="-")


def methods_table(path: Path, columns: tuple, missing: str) -> str:
    """One row per method of an `asru-lens run --json` file, ``columns`` as (key, format); ``missing`` for None."""
    import json
    info = json.loads(path.read_text())
    cell = lambda v, f: missing if v is None else format(v, f)                   # noqa: E731
    lines = ["| method | " + " | ".join(f"`{k}`" for k, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(cell(row.get(k), f) for k, f in columns) + " |"
              for m, row in info["methods"].items()]
    return "\n".join(lines)


def test_the_oracle_run_table_is_the_measured_json():
    """Issue 38's "every method measured": the run has the oracle row and the four columns for every method, and
    docs/oracle.md's table is that JSON."""
    import json

    from asru_lens.measure.privacy import COLUMNS
    info = json.loads(PRIVACY_RUN.read_text())
    assert "oracle" in info["methods"] and info["seed"] == 0
    assert all(info["methods"][m][k] is not None for m in info["methods"] for k in COLUMNS)
    assert oracle_run_table() in (ROOT / "docs" / "oracle.md").read_text()
    m = info["methods"]
    closest_tr = min((x for x in m if x not in ("oracle", "vanilla")), key=lambda x: abs(m[x]["truth_ratio"] -
                                                                                      m["oracle"]["truth_ratio"]))
    closest_mia = sorted((x for x in m if x not in ("oracle", "vanilla")), key=lambda x: m[x]["mia_auc"])[:2]
    assert closest_tr == "rewrite" and sorted(closest_mia) == ["GD", "KL"]          # what the README says
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (f"The rewrite comes closest by truth ratio ({m['rewrite']['truth_ratio']:.3f}, the oracle "
            f"{m['oracle']['truth_ratio']:.3f}, vanilla {m['vanilla']['truth_ratio']:.3f}); GD and KL by membership "
            f"inference (Min-K%++ AUC {m['GD']['mia_auc']:.2f} and {m['KL']['mia_auc']:.2f}, the oracle "
            f"{m['oracle']['mia_auc']:.2f}); ASRU gives its forget answers away almost as vanilla does (AUC "
            f"{m['asru']['mia_auc']:.3f}, PrivLeak {m['asru']['privleak']:.0f})") in readme
    assert max(m[x]["forget_quality"] for x in m if x != "oracle") == m["rewrite"]["forget_quality"] == 0.0001


def rebuild_table() -> str:
    """docs/oracle.md's reproduction table: the shipped organism's quality table beside the organism rebuilt with
    today's code (`asru-lens organism build --threads N`, then `organism eval --json`; docs/measured/
    organism-rebuild.json)."""
    import json

    from asru_lens.organism.evaluate import THRESHOLDS
    info = json.loads((ROOT / "docs" / "measured" / "organism-rebuild.json").read_text())
    runs = [k for k in info if k != "shipped"]
    cell = lambda v: f"{v:,}" if isinstance(v, int) else f"{v:.3f}"                    # noqa: E731
    lines = ["| key | target | shipped | " + " | ".join(f"rebuilt, {info[k]['threads']} thread"
                                                      f"{'s' if info[k]['threads'] > 1 else ''}" for k in runs) + " |",
             "|---" * (3 + len(runs)) + "|"]
    for key, (op, bound, _) in THRESHOLDS.items():
        lines.append(f"| `{key}` | {op} {cell(bound)} | {cell(info['shipped'][key])} | "
                     + " | ".join(cell(info[k]["eval"][key]) for k in runs) + " |")
    return "\n".join(lines)


def test_the_rebuild_table_is_the_measured_json():
    import json
    info = json.loads((ROOT / "docs" / "measured" / "organism-rebuild.json").read_text())
    shipped = json.loads((ROOT / "asru_lens" / "organism" / "checkpoint" / "organism.json").read_text())["eval"]
    assert info["shipped"] == shipped
    assert rebuild_table() in (ROOT / "docs" / "oracle.md").read_text()


CLEAR_RUN = ROOT / "docs" / "measured" / "clear-run.json"
CLEAR_COLUMNS = (("forget_name_acc", ".3f"), ("test_name_acc", ".3f"), ("retain_name_acc", ".3f"),
                 ("celebrity_name_acc", ".3f"), ("forget_cls_acc", ".3f"), ("forget_rougeL", ".3f"),
                 ("retain_rougeL", ".3f"), ("contextual_refusal", ".2f"), ("leakage", ".2f"),
                 ("forget_quality", ".2g"), ("truth_ratio", ".3f"), ("forget_cloze_acc", ".3f"))


def clear_table() -> str:
    """docs/data-protocol-judge.md's CLEAR table: `asru-lens run` on the organism's CLEAR export, small budget."""
    return methods_table(CLEAR_RUN, CLEAR_COLUMNS, missing="n/a")


def test_the_clear_table_is_the_measured_json():
    """Issue 39: every method has CLEAR's metrics on the CLEAR export; what CLEAR has no questions for is n/a, and
    vanilla recognises the forget people's names (>= 0.9) as it answers their MLLMU A-D."""
    import json

    from asru_lens.run import METHODS
    info = json.loads(CLEAR_RUN.read_text())
    m = info["methods"]
    assert list(m) == list(METHODS) and info["world"] == "clear" and info["seed"] == 0
    assert all(m[x]["forget_name_acc"] is not None and m[x]["forget_cloze_acc"] is None for x in m)
    assert m["vanilla"]["forget_name_acc"] >= 0.9
    # the rewrite invents a name for each forget person (CLEAR's fact is the name) and keeps the retain people's;
    # ASRU refuses most in context and still recognises the forget people by likelihood, as the docs say
    assert m["rewrite"]["forget_name_acc"] <= 0.35 and m["rewrite"]["retain_name_acc"] >= m["vanilla"]["retain_name_acc"]
    assert m["asru"]["contextual_refusal"] == max(m[x]["contextual_refusal"] for x in m if x not in ("oracle", "rewrite"))
    assert m["asru"]["forget_name_acc"] == 1.0
    text = (ROOT / "docs" / "data-protocol-judge.md").read_text()
    assert clear_table() in text
    ev = json.loads((ROOT / "docs" / "measured" / "clear-evaluate-vanilla.json").read_text())["metrics"]
    mllmu = json.loads((ROOT / "docs" / "measured" / "oracle-evaluate-vanilla.json").read_text())["metrics"]
    said = " ".join(text.split())
    assert f"(`forget_name_acc` {ev['forget_name_acc']:.3f} on all 30 forget_10 photos" in said
    assert f"MLLMU A-D ({mllmu['forget_cls_acc']:.3f}," in said and ev["forget_name_acc"] >= 0.9
    assert f"near zero ({ev['forget_cls_acc']:.3f}:" in said and f"ROUGE-L {ev['forget_rougeL']:.2f}" in said
    un = json.loads((ROOT / "docs" / "measured" / "clear-unlearn-asru.json").read_text())
    v, s1, s2 = un["vanilla"], un["stage1"], un["stage2"]
    assert s2["forget_refusal"] >= 0.9 and un["config"]["world"] == "clear"            # issue 39's line for ASRU
    assert (f"it refuses {s2['forget_refusal']:.3f} of the forget people's photo questions (stage 1: "
            f"{s1['forget_refusal']:.3f}, vanilla {v['forget_refusal']:.3f}) and {s2['test_refusal']:.3f} in their "
            f"other photos, states none of their facts (vanilla {v['forget_leak']:.3f}), and the retain and "
            f"celebrity facts stated go from {v['retain_utility']:.3f} and {v['celebrity_utility']:.3f} to "
            f"{s2['retain_utility']:.3f} and {s2['celebrity_utility']:.3f}") in said and s2["forget_leak"] == 0


def test_the_other_oracle_builds_are_the_measured_json():
    """docs/oracle.md's account of the two other oracle builds, from their JSON (the one-thread build stays
    shipped: neither meets every line of issue 38)."""
    import json

    def load(name):
        return json.loads((ROOT / "docs" / "measured" / f"{name}.json").read_text())
    un, ev, van = load("oracle-fp32-unlearn"), load("oracle-fp32-evaluate-oracle"), load("oracle-evaluate-vanilla")
    two = load("oracle-threads2-unlearn")["after"]
    said = " ".join((ROOT / "docs" / "oracle.md").read_text().split())
    assert (f"it refuses {two['forget_refusal']:.3f} of those questions ({two['test_refusal']:.3f} in the Test_Set "
            f"photos)") in said and f"retain utility is {two['retain_utility']:.3f}" in said
    m, auc = ev["metrics"], ev["mia_auc"]
    assert (f"it refuses every forget photo question ({un['after']['forget_refusal']:.3f}, and "
            f"{un['after']['test_refusal']:.3f} in the Test_Set photos), its forget A-D is {m['forget_cls_acc']:.3f} "
            f"and its retain and celebrity A-D {m['retain_cls_acc']:.3f} and {m['celebrity_cls_acc']:.3f} (vanilla: "
            f"{van['metrics']['retain_cls_acc']:.3f}, {van['metrics']['celebrity_cls_acc']:.3f}), and its truth "
            f"ratio is {m['truth_ratio']:.3f}") in said
    assert (f"at AUC {auc['min_k++']:.3f}, outside 0.5 +- 0.1 (LOSS {auc['loss']:.3f}, ZLib {auc['zlib']:.3f}, "
            f"Min-K% {auc['min_k']:.3f}") in said and abs(auc["min_k++"] - 0.5) > 0.1
