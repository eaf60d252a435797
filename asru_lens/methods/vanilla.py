"""vanilla: the model as it was given, the reference every other row is compared with. Trains nothing."""
from __future__ import annotations

from asru_lens.methods import register


@register("vanilla", paper=True, tuned=False, colour="#7f7f7f")
def vanilla(ctx) -> dict:
    """The model untouched."""
    return {}
