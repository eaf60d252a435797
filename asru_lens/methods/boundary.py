"""ASRU stage 2's boundary set: forget and retain questions in equal numbers, each marked ``meta["forget"]``,
a repeated photo shown in a new view (``photo_view``) so that a repeat teaches the person, not one picture.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops, ImageEnhance

from asru_lens.core.data import QA


def photo_view(image, rng: np.random.Generator):
    """Another view of the same photo: shifted by up to 5% of its side, brightness x0.8-1.2, pixel noise
    (sd 6 of 255). Used for the boundary set's repeats, so that a repeated forget question teaches the
    person rather than one exact picture."""
    shift = max(1, round(0.05 * min(image.size)))
    dx, dy = (int(x) for x in rng.integers(-shift, shift + 1, 2))
    out = ImageEnhance.Brightness(ImageChops.offset(image.convert("RGB"), dx, dy)).enhance(rng.uniform(0.8, 1.2))
    pixels = np.asarray(out, dtype=np.float32) + rng.normal(0, 6, (image.size[1], image.size[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def boundary_set(forget: list, retain: list, n: int | None = None, seed: int = 0, augment: bool = True) -> list:
    """``n`` forget plus ``n`` retain questions (``data.QA``), each marked ``meta["forget"]``.

    A set with fewer than ``n`` questions is repeated (every question as evenly as possible) to reach ``n``,
    so forget and retain stay balanced; ``n=None`` takes every question once. With ``augment``, every repeat
    after a question's first copy shows ``photo_view`` of its photo instead of the same pixels."""
    rng = np.random.default_rng(seed)

    def pick(items):
        k = n or len(items)
        whole, rest = divmod(k, len(items))
        idx = rng.choice(len(items), min(k, len(items)), replace=False)
        return list(items) * whole + [items[i] for i in sorted(idx[:rest])]

    def mark(items, f):
        out = []
        for i, q in enumerate(pick(items)):
            repeat = i >= len(items)        # pick lists every question once before any repeat
            image = photo_view(q.image, rng) if augment and repeat and q.image is not None else q.image
            out.append(QA(q.question, q.answer, image, q.id, q.kind, q.options, {**q.meta, "forget": f}))
        return out
    return mark(forget, True) + mark(retain, False)
