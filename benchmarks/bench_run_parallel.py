"""``asru-lens run --workers 2`` against the serial run: wall time and the table, on this machine.

Runs ``asru-lens run --budget small --json`` (every method, or ``--methods``) twice as fresh processes, serially (``--workers
1``, torch on every core) and with two Ray workers (one core each), each into its own temporary run folder, and
prints JSON: ``{"ratio": parallel_s / serial_s, "serial_s", "parallel_s", "same_table": ...}``. Goal on 2 cores:
ratio <= 0.75 with the same table. Needs Ray (``pip install 'asru_lens[ray]'``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

DEFAULT_METHODS = None      # every registered method


def timed_run(workers: int, methods: str, folder: str, extra: list[str]) -> tuple[float, dict]:
    argv = [sys.executable, "-m", "asru_lens", "run", "--budget", "small", "--json", "--workers", str(workers),
            "--out", folder, *(["--methods", methods] if methods else []), *extra]
    t = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    took = time.perf_counter() - t
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return took, json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--methods", default=DEFAULT_METHODS, help="the run's methods, comma-separated (default: all)")
    ap.add_argument("--workers", type=int, default=2, help="Ray workers of the parallel run (default 2)")
    ap.add_argument("--model", help="model folder or Hub id (default: the organism)")
    ap.add_argument("--json", action="store_true", help="print JSON (the only output format; kept for symmetry)")
    args = ap.parse_args()
    extra = ["--model", args.model] if args.model else []
    with tempfile.TemporaryDirectory() as tmp:
        serial_s, serial = timed_run(1, args.methods, os.path.join(tmp, "serial"), extra)
        parallel_s, parallel = timed_run(args.workers, args.methods, os.path.join(tmp, "parallel"), extra)
    same = serial["methods"] == parallel["methods"] and serial["tuning"] == parallel["tuning"]
    print(json.dumps({"ratio": round(parallel_s / serial_s, 3), "serial_s": round(serial_s, 1),
                      "parallel_s": round(parallel_s, 1), "workers": args.workers, "same_table": same,
                      "methods": list(serial["methods"]), "cpus": os.cpu_count(), "machine": platform.machine(),
                      "goal": "ratio <= 0.75 on 2 cores, same_table true"}, indent=1))


if __name__ == "__main__":
    main()
