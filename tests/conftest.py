import os

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


@pytest.fixture(scope="session")
def export(tmp_path_factory, world_folder):
    """The organism's world exported as MLLMU-Bench is laid out on the Hub, and its unseen faces."""
    from asru_lens.organism.provider import export as write
    root = tmp_path_factory.mktemp("export")
    write(root / "mllmu", root / "faces")
    return root / "mllmu", root / "faces"


@pytest.fixture(scope="session")
def probe_json(world_folder, tmp_path_factory):
    """`asru-lens probe --json --figures DIR --out DIR` on the shipped organism and its own world (run once)."""
    import io
    import json
    from contextlib import redirect_stdout

    from asru_lens.cli import main
    buf = io.StringIO()
    figures = tmp_path_factory.mktemp("figures")
    with redirect_stdout(buf):
        assert main(["probe", "--json", "--figures", str(figures), "--out", str(figures / "direction")]) == 0
    return json.loads(buf.getvalue())


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
