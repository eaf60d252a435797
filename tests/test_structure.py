"""The library's shape: no import cycle (imports inside functions counted), every module importable alone, the
optimiser built in one place."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "asru_lens"


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(name: str, path: Path, known: dict) -> set[str]:
    """The asru_lens modules ``name`` imports anywhere in its file (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_counting_imports_inside_functions():
    known = modules()
    graph = {m: imports(m, p, known) for m, p in known.items()}
    assert graph["asru_lens.run"] >= {"asru_lens.methods.budget", "asru_lens.measure.table"}   # the finder reads
    assert cycles(graph) == []


# One interpreter imports every module once, to load the third-party libraries they use (seconds each), forgets
# the asru_lens modules, then forks a child per module: each child starts with no asru_lens module loaded, so an
# import cycle or a missing import fails there as in a fresh interpreter, without paying torch's and
# transformers' import once per module.
FORK_EACH = """
import os, sys, traceback
for name in sys.argv[1:]:
    __import__(name)
for name in [m for m in sys.modules if m.split(".")[0] == "asru_lens"]:
    del sys.modules[name]
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            __import__(name)
        except BaseException:
            print(name, "|", traceback.format_exc().strip().splitlines()[-1], flush=True)
            os._exit(3)                     # reported: the parent says nothing more
        os._exit(0)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code not in (0, 3):                  # died without a word (a signal, a crash in C)
        print(name, "| exit status", code, flush=True)
"""


def test_every_module_imports_alone_in_a_fresh_interpreter():
    # __main__ is the command line itself: importing it runs it
    names = [m for m in modules() if m != "asru_lens.__main__"]
    r = subprocess.run([sys.executable, "-c", FORK_EACH, *names], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    failed = sorted({line.split(" |")[0] for line in r.stdout.splitlines() if " | " in line})
    assert failed == [], r.stdout
    assert len(names) > 40


def test_the_optimiser_is_built_in_core_training_only():
    """The organism's own pretraining (``organism/``) aside, every AdamW comes from ``core.training.optimizer``."""
    builds = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                    if "torch.optim" in p.read_text() and p.parts[-2] != "organism")
    assert builds == ["core/training.py"]
