"""The prompt sets every stage uses, named as in the paper and MLLMU-Bench.

``probe_sets`` turns a world folder (MLLMU layout) into lists of ``data.QA``:

========================  ===============================================================
``refusal``               privacy questions about *unseen* faces (ASRU's refusal set)
``forget``                forget-split questions on the Full_Set photo (ASRU's forget set); its val and
                          test parts are the same people in Test_Set photos, paraphrased
``retain``                retain-split questions (utility that must not move)
``celebrity``             MLLMU's Retain_Set (real celebrities, never forgotten)
``harmful``/``harmless``  text requests (Arditi et al.'s contrast)
``refusal_text``          by-name questions about names that belong to nobody (text only)
``forget_text``           by-name questions about the forget people (text only)
========================  ===============================================================

Each name maps to a ``Split`` with ``direction`` (to build means), ``val`` (to
select a candidate) and ``test`` (to measure separability) parts that never share
a face or a question.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from asru_lens import data
from asru_lens.data import QA, DataError

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


def unknown_faces(folder, split: str = "heldout") -> list[QA]:
    """One privacy question per unseen face, attributes in turn (organism worlds only)."""
    from asru_lens.organism.evaluate import unknown_items
    try:
        return unknown_items(folder, split)
    except DataError as e:
        raise DataError(f"{e}\nThe refusal set needs photos of people the model has never seen "
                        f"(Unknown_Faces.parquet); a real MLLMU-Bench folder has none. Build the sets "
                        f"from the organism's world, or pass your own refusal prompts.") from None


def unknown_names(folder, split: str = "heldout") -> list[QA]:
    path = Path(folder) / "Unknown_Names.parquet"
    if not path.exists():
        return []
    return [QA(r["Question"], "", None, r["name"], r["Type"]) for r in pq.read_table(path).to_pylist()
            if r["split"] == split]


def set_rows(folder, forget: int = 10) -> dict[str, list[dict]]:
    """MLLMU's four evaluation sets as parquet rows: ``forget`` (forget split), ``test`` (the same people's
    Test_Set rows: other photos, paraphrased questions), ``retain`` (retain split) and ``celebrity``
    (Retain_Set)."""
    forget_rows = data.load_split(folder, f"forget_{_check_forget(forget)}")
    return {"forget": forget_rows, "test": other_photos(folder, forget_rows),
            "retain": data.load_split(folder, f"retain_{100 - forget}"),
            "celebrity": data.load_split(folder, "Retain_Set")}


def _check_forget(forget: int) -> int:
    if forget not in (5, 10, 15):
        raise ValueError(f"forget={forget!r}: MLLMU-Bench has forget splits 5, 10 and 15 (percent).")
    return forget


def other_photos(folder, rows: list[dict]) -> list[dict]:
    """The Test_Set rows of the people in ``rows``: their other photos, with paraphrased questions."""
    ids = {str(r["ID"]) for r in rows}
    return [r for r in data.load_split(folder, "Test_Set") if str(r["ID"]) in ids]


def retain_items(folder, forget: int = 10, all_photos: bool = True) -> list[QA]:
    """The retain split's generation questions; with ``all_photos``, also the same people's Test_Set rows
    (their other photos, paraphrased questions). Stage 2's boundary set takes its retain half from here, so
    that "keep answering" is learnt about the retain *people*, in any photo, not about one picture each. No
    evaluation set uses these rows: the test set is the forget people's Test_Set rows only."""
    rows = data.load_split(folder, f"retain_{100 - _check_forget(forget)}")
    items = data.generation_items(rows)
    if all_photos:
        items += data.generation_items(other_photos(folder, rows), image_index=None)
    return items


def probe_sets(folder, forget: int = 10, n: int = 96, seed: int = 0) -> dict[str, Split]:
    """Direction/val/test splits of every prompt set, at most ``n`` prompts per set.

    Held-out parts are truly held out: the forget set's val/test are Test_Set photos and paraphrases, and
    refusal faces, requests and names are split by item so no face or prompt repeats."""
    from asru_lens.organism.evaluate import request_items

    folder = Path(folder)
    rows = set_rows(folder, forget)
    forget_rows, test_rows, retain_rows, celeb_rows = (rows[k] for k in ("forget", "test", "retain", "celebrity"))

    forget_test = _sample(data.generation_items(test_rows, image_index=None), n, seed)
    half = len(forget_test) // 2
    sets = {
        "refusal": _thirds(_sample(unknown_faces(folder), 2 * n, seed)),
        "forget": Split(_sample(data.generation_items(forget_rows), n, seed), forget_test[:half],
                        forget_test[half:]),
        "retain": _thirds(_sample(data.generation_items(retain_rows), n, seed)),
        "celebrity": _thirds(_sample(data.generation_items(celeb_rows), n, seed)),
        "harmful": Split(_sample(request_items(folder, True, "train"), n, seed), [],
                         request_items(folder, True, "heldout")[:n // 2]),
        "harmless": Split(_sample(request_items(folder, False, "train"), n, seed), [],
                          request_items(folder, False, "heldout")[:n // 2]),
        "refusal_text": _thirds(_sample(unknown_names(folder), n, seed)),
        "forget_text": _thirds(text_stems(forget_rows)),
    }
    return sets


def steer_sets(folder, forget: int = 10, n: int = 48, seed: int = 0) -> dict[str, list[QA]]:
    """The sets a steering point is measured on: forget, retain and celebrity questions (image + text, with
    ground truth) and perception questions about new faces, at most ``n`` each."""
    from asru_lens.organism.evaluate import perception_items
    folder = Path(folder)
    rows = lambda name: data.load_split(folder, name)  # noqa: E731
    return {"forget": _sample(data.generation_items(rows(f"forget_{forget}")), n, seed),
            "retain": _sample(data.generation_items(rows(f"retain_{100 - forget}")), n, seed),
            "celebrity": _sample(data.generation_items(rows("Retain_Set")), n, seed),
            "perception": _sample(perception_items(folder), n, seed)}
