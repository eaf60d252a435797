import os
import tempfile

import pytest

# No test may reach the Hub: set before transformers/huggingface_hub are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The world is cached per test process in a temp folder, never in the user's home. Set at import, so that the
# notebooks' kernels (nbval), started by the same process, use it too and never race another worker for it.
os.environ["ASRU_LENS_CACHE"] = tempfile.mkdtemp(prefix="asru_lens_cache_")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core: one thread each (kernels included) instead of oversubscribing
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Groups for pytest-xdist's ``--dist loadgroup``: a notebook's cells and a test file's tests stay on one
    worker, in order; the tests that share the unlearned export (one unlearn run of minutes) share a worker."""
    for item in items:
        group = ("unlearned_export" if "unlearned_export" in getattr(item, "fixturenames", ())
                 else item.nodeid.split("::")[0])
        item.add_marker(pytest.mark.xdist_group(group))


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
    """`asru-lens probe --json --figures DIR` on the shipped organism and its own world (run once)."""
    import io
    import json
    from contextlib import redirect_stdout

    from asru_lens.cli import main
    buf = io.StringIO()
    figures = tmp_path_factory.mktemp("figures")
    with redirect_stdout(buf):
        assert main(["probe", "--json", "--figures", str(figures)]) == 0
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
