"""`asru-lens run --workers N`: the (method, learning rate) trainings as Ray tasks give the serial run's table."""
import json
import subprocess
import sys

import pytest

from asru_lens import parallel

PLUGIN = '''
from asru_lens import methods


@methods.register("after_GA", tuned=False, after="GA")
def after_ga(ctx):
    """Trains nothing, from GA's chosen weights: its row must be GA's."""
    return {}
'''


def test_plan_puts_each_method_after_the_ones_it_needs():
    from asru_lens.methods.context import needs, plan         # the one rule, which fit and the Ray pool follow
    assert plan(["rewrite", "vanilla"]) == ["stage1", "asru", "rewrite", "vanilla"]
    assert plan(["vanilla", "asru", "stage1"]) == ["vanilla", "stage1", "asru"]
    assert plan(["GA"]) == ["GA"]
    assert needs("rewrite") == ["asru"] and needs("rewrite", tune=False) == []    # it reads ASRU's rate only
    assert needs("asru", tune=False) == ["stage1"]                                 # stage 2 starts from stage 1


def test_without_ray_the_run_is_serial_and_says_how_to_get_it(monkeypatch):
    said = []
    monkeypatch.setattr(parallel, "available", lambda: False)
    assert parallel.choose(4, None, said.append) == (1, None)
    assert parallel.choose(1, "auto", said.append) == (1, None)
    assert len(said) == 2 and "pip install 'asru_lens[ray]'" in said[0] and "serial" in said[0]
    assert parallel.choose(1, None, said.append) == (1, None) and len(said) == 2     # serial asked: no note
    monkeypatch.setattr(parallel, "available", lambda: True)
    assert parallel.choose(2, None, said.append) == (2, None)


def test_workers_without_a_recipe_is_one_clear_error():
    from asru_lens.run import RunConfig, run
    with pytest.raises(ValueError, match=r"recipe=asru_lens\.parallel\.Recipe"):
        run(None, None, RunConfig.small(methods=("vanilla",)), workers=2)


def test_workers_must_be_positive(capsys):
    from asru_lens.cli import main
    with pytest.raises(SystemExit):
        main(["run", "--workers", "0"])
    assert "--workers" in capsys.readouterr().err


def test_a_ray_address_nothing_answers_at_is_one_clear_error_before_the_model_loads(capsys, monkeypatch):
    """ray.init waits minutes on a wrong address; the run says so within seconds, before the model loads."""
    import socket
    import time

    from asru_lens import cli
    monkeypatch.setattr(parallel, "available", lambda: True)
    monkeypatch.setattr(cli, "_load", lambda args: pytest.fail("the model loaded before the address was checked"))
    with socket.socket() as s:                 # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.time()
    assert cli.main(["run", "--ray-address", f"ray://127.0.0.1:{port}"]) != 0
    err = capsys.readouterr().err
    assert f"--ray-address 'ray://127.0.0.1:{port}'" in err and "ray start --head" in err
    assert time.time() - t < 15
    with pytest.raises(ValueError, match="is not ray://HOST:PORT"):
        parallel.check_address("head-node")
    parallel.check_address("auto")             # ray.init finds the local cluster itself


@pytest.mark.slow
def test_two_workers_give_the_serial_table(small_run, tmp_path):
    """`run --workers 2` (two Ray workers on this machine) against the shared serial run at the same seed: the same
    rows, residue columns and learning-rate grids; a method that starts after GA gets GA's chosen weights."""
    pytest.importorskip("ray")
    serial, _, small = small_run
    plugin = tmp_path / "after_ga.py"
    plugin.write_text(PLUGIN)
    argv = [sys.executable, "-m", "asru_lens", *small, "--workers", "2", "--json", "--out", str(tmp_path / "run")]
    methods = argv.index("vanilla,GA")
    argv[methods] = "vanilla,GA,after_GA"
    done = subprocess.run([*argv, "--plugin", str(plugin)], capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert list(out["methods"]) == ["vanilla", "GA", "after_GA"]
    assert {m: out["methods"][m] for m in ("vanilla", "GA")} == serial["methods"]
    assert out["tuning"] == serial["tuning"] and out["residue"]["GA"] == serial["residue"]["GA"]
    assert out["methods"]["after_GA"] == serial["methods"]["GA"]       # GA's weights, shipped to another task
    tasks = {p.name for p in (tmp_path / "run" / "tasks").iterdir()}
    assert {"vanilla.json", "GA.json", "GA.safetensors", "after_GA.json"} <= tasks   # kept as each row came in
    # a resumed parallel run: after_GA's row lost, it is made again from GA's kept weights, the rest read back
    (tmp_path / "run" / "tasks" / "after_GA.json").unlink()
    again = subprocess.run([*argv, "--plugin", str(plugin), "--resume"], capture_output=True, text=True, timeout=1500)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads(again.stdout)
    assert resumed["resumed"] == ["vanilla", "GA"] and "2 of 3 tasks already finished" in again.stderr
    assert resumed["methods"] == out["methods"] and resumed["tuning"] == out["tuning"]
