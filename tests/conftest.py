import os
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _cache():
    return os.environ["ASRU_LENS_CACHE"]


@pytest.fixture(scope="session")
def world():
    from asru_lens.organism.world import build_world
    return build_world()


@pytest.fixture(scope="session")
def world_folder(_cache):
    from asru_lens.organism.mllmu import world_dir
    return world_dir()


@pytest.fixture(scope="session")
def organism():
    import asru_lens
    return asru_lens.load()


@pytest.fixture(scope="session")
def organism_world(world_folder):
    """The organism's world as every command opens it (asru_lens.open_world)."""
    import asru_lens
    return asru_lens.open_world(world_folder)


def shared(name: str, build) -> Path:
    """``$ASRU_LENS_CACHE/name``, made once for the whole test run by ``build(folder)`` (the xdist workers share
    the cache; a lock makes the others wait for the first, and a marker file says it finished)."""
    from asru_lens.core.atomic import file_lock
    folder = Path(os.environ["ASRU_LENS_CACHE"]) / name
    with file_lock(folder.with_name(name + ".lock")):
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            (folder / ".done").write_text("")
    return folder


@pytest.fixture(scope="session")
def export(world_folder):
    """The organism's world exported as MLLMU-Bench is laid out on the Hub, and its unseen faces (made once); its
    holdout people (never trained on) beside them, in ``.../holdout``."""
    from asru_lens.organism.provider import export as write
    root = shared("export", lambda root: write(root / "mllmu", root / "faces", holdout=root / "holdout"))
    return root / "mllmu", root / "faces"


@pytest.fixture(scope="session")
def clear_export(world_folder):
    """The organism's world in CLEAR's layout and schema (`organism export --format clear`) and its unseen faces
    (made once)."""
    from asru_lens.organism.clear import export_clear
    from asru_lens.organism.provider import OrganismWorld, write_faces

    def build(root):
        export_clear(root / "clear", world_folder)
        write_faces(root / "faces", OrganismWorld(world_folder))
    root = shared("clear-export", build)
    return root / "clear", root / "faces"


@pytest.fixture(scope="session")
def free_export(world_folder):
    """The same world exported in the "free" style (each person's questions in their own order, ground truths
    reworded), as the real benchmark reads (made once)."""
    from asru_lens.organism.provider import export as write
    root = shared("export-free", lambda root: write(root / "mllmu", root / "faces", style="free"))
    return root / "mllmu", root / "faces"


@pytest.fixture(scope="session")
def probe_json(world_folder):
    """`asru-lens probe --json --figures DIR --out DIR` on the shipped organism and its own world (run once for the
    whole test run): its JSON."""
    import io
    import json
    from contextlib import redirect_stdout

    from asru_lens.cli import main

    def build(root):
        buf = io.StringIO()
        with redirect_stdout(buf):
            assert main(["probe", "--json", "--figures", str(root / "figures"), "--out", str(root / "direction")]) == 0
        (root / "probe.json").write_text(buf.getvalue())
    return json.loads((shared("probe", build) / "probe.json").read_text())


@pytest.fixture(scope="session")
def unlearned_export(export, tmp_path_factory):
    """`asru-lens unlearn` with its defaults on the export (run once): (JSON, saved model folder, checkpoints)."""
    import io
    import json
    from contextlib import redirect_stdout

    from asru_lens.cli import main
    mllmu, faces = export
    root = tmp_path_factory.mktemp("unlearned")
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["unlearn", "--data", str(mllmu), "--unseen-faces", str(faces), "--json", "--out",
                     str(root / "model"), "--checkpoint-dir", str(root / "ckpt"), "--checkpoint-every", "50"]) == 0
    return json.loads(buf.getvalue()), root / "model", root / "ckpt"


@pytest.fixture(scope="session")
def small_run(world_folder):
    """`asru-lens run --budget small --residue --methods vanilla,GA --json` on the organism, with no --out, run
    once for the whole test run in a folder of its own: (its JSON, the folder it ran in, its arguments). The
    report, resume and parallel tests compare against this one serial table."""
    import json
    import subprocess
    import sys

    def build(root):
        (root / "cwd").mkdir()
        env = {k: v for k, v in os.environ.items() if k != "ASRU_LENS_FIGURES"}
        done = subprocess.run([sys.executable, "-m", "asru_lens", *SMALL_RUN, "--json"], cwd=root / "cwd", env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        (root / "run.json").write_text(done.stdout)
    root = shared("small-run", build)
    return json.loads((root / "run.json").read_text()), root / "cwd", list(SMALL_RUN)


SMALL_RUN = ["run", "--budget", "small", "--residue", "--methods", "vanilla,GA"]


# -- a headless Chromium for the browser tests and the static pages (playwright) --------------------------------
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-extensions", "--no-first-run", "--disable-sync", "--disable-default-apps"]


@pytest.fixture(scope="module")
def browser():
    from asru_lens.show.render import chromium
    path = chromium()
    if path is None:
        pytest.skip("needs a Chromium (/usr/bin/chromium, or chromium on PATH)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (the dev extra)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
