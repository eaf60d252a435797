"""ASRU's rule-based reward, and a way to add terms to it.

The table (shared notes; ASRU stage 2) scores one response against its ground
truth (GT). ``R`` is the ROUGE-L F1 of the response against the GT:

=======  ===============  ===============  ==================  =========
sample   GT in response   else refusal     else                otherwise
=======  ===============  ===============  ==================  =========
forget   0.0              1.0              0 < R < 0.4: 0.5    0.1
retain   1.0              0.0              R > 0.6: 0.5        0.1
=======  ===============  ===============  ==================  =========

A reward is a list of weighted components, each ``fn(response, sample) -> float``
where ``sample`` is a ``data.QA`` whose ``meta["forget"]`` says which row applies.
``Reward([(1.0, asru)])`` is the paper's reward; add e.g. ``(0.2, naturalness)``
to see what a naturalness term does to the boundary.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from asru_lens.measure.metrics import rouge_l
from asru_lens.measure.refusal import _STOP, contains, contextual_refusal, is_broken, is_refusal, normalize  # noqa: F401


def asru(response: str, sample) -> float:
    """The table above."""
    forget = bool(sample.meta.get("forget"))
    if contains(response, sample.answer):
        return 0.0 if forget else 1.0
    if is_refusal(response):
        return 1.0 if forget else 0.0
    r = rouge_l(response, sample.answer)
    if forget:
        return 0.5 if 0 < r < 0.4 else 0.1
    return 0.5 if r > 0.6 else 0.1


def naturalness(response: str, sample) -> float:
    """0 for empty, repeating or glued-together text (``refusal.is_broken``), else 1."""
    return 0.0 if not response.strip() or is_broken(response) else 1.0


@dataclass
class Reward:
    """Weighted sum of components; ``parts`` returns each component's value too (for the progress bar)."""
    components: list[tuple[float, Callable]] = field(default_factory=lambda: [(1.0, asru)])

    def parts(self, response: str, sample) -> dict[str, float]:
        return {fn.__name__: w * fn(response, sample) for w, fn in self.components}

    def __call__(self, response: str, sample) -> float:
        return sum(self.parts(response, sample).values())
