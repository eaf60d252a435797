"""The prompt sets every stage uses, named as in the paper and MLLMU-Bench.

``probe_sets`` turns a ``World`` (``asru_lens.core.world``) into lists of ``data.QA``:

========================  ===============================================================
``refusal``               privacy questions about *unseen* faces (ASRU's refusal set), in the model's
                          protocol (``World.refusal_items``)
``forget``                forget-split questions on the Full_Set photo (ASRU's forget set); its val and
                          test parts are the same people in Test_Set photos, paraphrased
``retain``                retain-split questions (utility that must not move)
``celebrity``             MLLMU's Retain_Set (real celebrities, never forgotten)
``harmful``/``harmless``  text requests (Arditi et al.'s contrast)
``refusal_text``          by-name questions about names that belong to nobody (text only; empty when the
                          world has none)
``forget_text``           by-name questions about the forget people (text only)
========================  ===============================================================

Each name maps to a ``Split`` with ``direction`` (to build means), ``val`` (to
select a candidate) and ``test`` (to measure separability) parts that never share
a face or a question.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from asru_lens.core import data
from asru_lens.core.data import QA
from asru_lens.core.world import World


@dataclass
class Split:
    direction: list[QA] = field(default_factory=list)
    val: list[QA] = field(default_factory=list)
    test: list[QA] = field(default_factory=list)

    def all(self) -> list[QA]:
        return self.direction + self.val + self.test


def _thirds(items: list[QA], fractions=(0.5, 0.25)) -> Split:
    n = len(items)
    a, b = int(n * fractions[0]), int(n * (fractions[0] + fractions[1]))
    return Split(items[:a], items[a:b], items[b:])


def _sample(items: list[QA], n: int, seed: int) -> list[QA]:
    if len(items) <= n:
        return items
    idx = np.random.default_rng(seed).choice(len(items), n, replace=False)
    return [items[i] for i in sorted(idx)]


def text_stems(rows: list[dict]) -> list[QA]:
    """Pure_Text classification questions without their options: by-name questions in any MLLMU folder."""
    return [QA(q.question, q.options[q.answer], None, q.id, "Pure_Text")
            for q in data.classification_items(rows, which="text") if q.answer in q.options]


def _world(world) -> World:
    if not isinstance(world, World):
        raise TypeError(f"expected an asru_lens World, got {type(world).__name__} ({world!r}). Open one with "
                        f"asru_lens.open_world(folder) (it picks the provider: the organism's world or a plain "
                        f"MLLMU-Bench folder).")
    return world


def retain_items(world: World, forget: int = 10, all_photos: bool = True) -> list[QA]:
    """The retain split's generation questions; with ``all_photos``, also the same people's Test_Set rows
    (their other photos, paraphrased questions). Stage 2's boundary set takes its retain half from here, so
    that "keep answering" is learnt about the retain *people*, in any photo, not about one picture each. No
    evaluation set uses these rows: the test set is the forget people's Test_Set rows only."""
    rows = world.split(f"retain_{100 - _world(world).check_forget(forget)}")
    items = data.generation_items(rows)
    if all_photos:
        items += data.generation_items(world.other_photos(rows), image_index=None)
    return items


def probe_sets(world: World, protocol, forget: int = 10, n: int = 96, seed: int = 0) -> dict[str, Split]:
    """Direction/val/test splits of every prompt set, at most ``n`` prompts per set. ``protocol``: the model's
    (``lens.protocol``), which words the refusal set's privacy questions.

    Held-out parts are truly held out: the forget set's val/test are Test_Set photos and paraphrases, and
    refusal faces, requests and names are split by item so no face or prompt repeats."""
    rows = _world(world).rows(forget)
    forget_test = _sample(data.generation_items(rows["test"], image_index=None), n, seed)
    half = len(forget_test) // 2
    return {
        "refusal": _thirds(_sample(world.refusal_items(protocol), 2 * n, seed)),
        "forget": Split(_sample(data.generation_items(rows["forget"]), n, seed), forget_test[:half],
                        forget_test[half:]),
        "retain": _thirds(_sample(data.generation_items(rows["retain"]), n, seed)),
        "celebrity": _thirds(_sample(data.generation_items(rows["celebrity"]), n, seed)),
        "harmful": Split(_sample(world.requests(True, "train"), n, seed), [], world.requests(True, "heldout")[:n // 2]),
        "harmless": Split(_sample(world.requests(False, "train"), n, seed), [],
                          world.requests(False, "heldout")[:n // 2]),
        "refusal_text": _thirds(_sample(world.unknown_name_items() or [], n, seed)),
        "forget_text": _thirds(text_stems(rows["forget"])),
    }


def steer_sets(world: World, forget: int = 10, n: int = 48, seed: int = 0) -> dict[str, list[QA]]:
    """The sets a steering point is measured on: forget, retain and celebrity questions (image + text, with
    ground truth) and, where the world has them, perception questions about new faces; at most ``n`` each."""
    rows = _world(world).rows(forget)
    sets = {name: _sample(data.generation_items(rows[name]), n, seed) for name in ("forget", "retain", "celebrity")}
    perception = world.perception_items()
    if perception is not None:
        sets["perception"] = _sample(perception, n, seed)
    return sets


def eval_sets(world: World, forget: int = 10, n: int = 48, seed: int = 0) -> dict[str, list]:
    """``steer_sets`` plus ``test``: the forget people's Test_Set photos with paraphrased questions."""
    sets = steer_sets(world, forget=forget, n=n, seed=seed)
    sets["test"] = _sample(data.generation_items(world.rows(forget)["test"], image_index=None), n, seed)
    return sets
