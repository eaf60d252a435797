"""The one timing rule every benchmark here uses: best of ``repeats`` wall-clock runs."""
from __future__ import annotations

import time


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)
