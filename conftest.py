"""Settings for the whole test run, notebooks included (a conftest in tests/ would not reach notebooks/)."""
import os
import tempfile

import pytest

# No test may reach the Hub: set before transformers/huggingface_hub are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One temp cache for the whole run, never the user's home: the controller makes it, the xdist workers inherit it
# (so the world and the export are built once, under a lock, not once per worker), and the notebooks' kernels
# (nbval), started by the workers, use it too. Figures the tests and notebooks write go to a temp folder as well,
# never over the committed figures/ (ASRU_LENS_FIGURES=$PWD/figures refreshes those on purpose).
if not os.environ.get("PYTEST_XDIST_WORKER") or "ASRU_LENS_TEST_CACHE" not in os.environ:
    os.environ["ASRU_LENS_TEST_CACHE"] = tempfile.mkdtemp(prefix="asru_lens_cache_")
    os.environ["ASRU_LENS_FIGURES"] = os.environ.get("ASRU_LENS_REFRESH_FIGURES") or tempfile.mkdtemp(
        prefix="asru_lens_figures_")
os.environ["ASRU_LENS_CACHE"] = os.environ["ASRU_LENS_TEST_CACHE"]
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core: one thread each (kernels included) instead of oversubscribing
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# About how long the longest groups take in CI (2 cores, `--durations`; the setup of the fixtures they build first
# included), so that they start first. pytest-xdist hands a worker its next group while it still holds two tests,
# so a long group late in the queue would keep one worker busy long after the other has run out of work.
SECONDS = {
    "unlearned_export": 420,
    "tests/test_export_commands.py::test_run_on_export_small_budget": 380,
    "notebooks/03_unlearning.ipynb": 350,
    "tests/test_parallel.py::test_two_workers_give_the_serial_table": 340,
    "notebooks/05_residue.ipynb": 330,
    "tests/test_real_width.py::test_real_2b_widths_end_to_end": 320,
    "notebooks/04_evaluation.ipynb": 320,
    "tests/test_run_report.py::test_run_resumes_after_ctrl_c": 215,   # with the serial run, when it builds it
    "tests/test_organism.py::test_short_training_run_end_to_end_and_deterministic": 105,
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Groups for pytest-xdist's ``--dist loadgroup``: a notebook's cells and a test file's quick tests stay on one
    worker, in order; the tests that share the unlearned export (one unlearn run of minutes) share a worker; every
    other slow test is a group of its own. The long groups go first (``SECONDS``, then notebooks, slow tests and
    quick files), so that the workers finish together."""
    def group(item):
        if "unlearned_export" in getattr(item, "fixturenames", ()):
            return "unlearned_export"
        if ".ipynb" in item.nodeid.split("::")[0]:
            return item.nodeid.split("::")[0]   # a notebook's cells share one kernel, in order
        if item.get_closest_marker("slow"):
            return item.nodeid
        return item.nodeid.split("::")[0]

    def rank(item):
        g = group(item)
        kind = 0 if g == "unlearned_export" else 1 if ".ipynb" in g else 2 if item.get_closest_marker("slow") else 3
        return (-SECONDS.get(g, 0), kind)

    items.sort(key=rank)                      # stable: a group's items keep their order
    for item in items:
        if ".ipynb" in item.nodeid.split("::")[0]:
            item.add_marker(pytest.mark.slow)     # a notebook runs for minutes: -m "not slow" skips it
        item.add_marker(pytest.mark.xdist_group(group(item)))
