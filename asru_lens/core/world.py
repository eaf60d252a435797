"""A world: an MLLMU-Bench folder, read once, plus the prompt sets that MLLMU-Bench lacks.

Every command works on a ``World``. The base class is a plain MLLMU-Bench download:

=====================  ======================================================================================
MLLMU's subsets        ``split(name)`` reads each parquet once per World (``Full_Set``, ``forget_10`` ...)
refusal set            ASRU's: privacy questions about unseen faces (``unseen_faces=DIR``) or your own
                       prompts (``refusal_prompts=FILE.jsonl``); see ``asru_lens.core.unseen``
harmful / harmless     requests shipped with the package (``asru_lens/prompts/*.txt``), for Arditi et al.'s
                       harmful-vs-harmless direction on any model
perception             None: MLLMU-Bench has no such set, so that measurement is skipped (``null`` in JSON)
unknown names          None: the text-only refusal set, likewise optional
holdout                people the model never trained on, in an MLLMU folder of their own (``holdout=DIR``,
                       its Full_Set): membership inference's non-members (``asru_lens.measure.privacy``);
                       None without one
=====================  ======================================================================================

A provider of a world subclasses ``World`` and fills in what it has: the model organism's world
(``asru_lens.organism.provider.OrganismWorld``) brings its own unseen faces, requests, perception questions
and unknown names. ``asru_lens.open_world`` picks the provider for a folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from asru_lens.core import data, unseen
from asru_lens.core.data import QA, DataError
from asru_lens.core.protocol import PROMPTS

FORGET_SPLITS = (5, 10, 15)


def shipped_requests(harmful: bool) -> list[str]:
    """Our harmful (or harmless) requests, one per line of ``asru_lens/prompts/harm{ful,less}.txt``."""
    path = PROMPTS / ("harmful.txt" if harmful else "harmless.txt")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class World:
    kind = "mllmu"
    forget_splits: tuple = FORGET_SPLITS          # percent; CLEAR's folders say which they hold
    # a benchmark that scores name recognition by likelihood (CLEAR) words the prompt here: each A-D option (a
    # name) is read as its answer, and the likeliest counts (``measure.evaluate.name_recognition``); None: not scored
    name_prompt: str | None = None
    # the name is itself a fact the benchmark asks and scores (CLEAR): the rewrite invents one for a forget person
    name_is_a_fact: bool = False
    # what this benchmark has no questions for: the table's columns it leaves n/a, each with why
    not_measured: dict[str, str] = {}

    def __init__(self, folder: str | os.PathLike, unseen_faces: str | os.PathLike | None = None,
                 refusal_prompts: str | os.PathLike | None = None, holdout: str | os.PathLike | None = None):
        self.folder = Path(folder)
        self.check_layout()                        # a missing or wrong folder is named now, not after probing
        self.holdout = Path(holdout) if holdout is not None else None
        if self.holdout is not None:
            try:
                data.split_path(self.holdout, "Full_Set")
            except DataError as e:
                raise DataError(f"--holdout {holdout}: {e} A holdout is an MLLMU-Bench folder of people the model "
                                f"never trained on (`asru-lens organism export --holdout DIR` writes one).") from None
        if unseen_faces is not None and refusal_prompts is not None:
            raise ValueError("pass either unseen_faces or refusal_prompts (--unseen-faces or --refusal-prompts), "
                             "not both.")
        self.unseen_faces = unseen.face_images(unseen_faces) if unseen_faces is not None else None
        self.refusal_prompts = unseen.read_refusal_prompts(refusal_prompts) if refusal_prompts is not None else None
        self._splits: dict[str, list[dict]] = {}

    def check_layout(self) -> None:
        """Fail now, naming the folder and what is missing, unless it is laid out as this world reads it."""
        data.split_path(self.folder, "Full_Set")

    def check_forget(self, forget: int) -> int:
        """``forget`` itself when this world has that forget split (percent), else one error naming the ones it has."""
        if forget not in self.forget_splits:
            raise ValueError(f"forget={forget!r}: {self.folder} ({self.kind}) has forget splits "
                             f"{', '.join(map(str, self.forget_splits))} (percent).")
        return forget

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.folder)!r})"

    # -- MLLMU-Bench's subsets, each read once -----------------------------------------------------------------
    def split(self, name: str) -> list[dict]:
        if name not in self._splits:
            self._splits[name] = data.load_split(self.folder, name)
        return self._splits[name]

    def rows(self, forget: int = 10) -> dict[str, list[dict]]:
        """MLLMU's four evaluation sets as parquet rows: ``forget`` (forget split), ``test`` (the same people's
        Test_Set rows: other photos, paraphrased questions), ``retain`` (retain split) and ``celebrity``
        (Retain_Set)."""
        forget_rows = self.split(f"forget_{self.check_forget(forget)}")
        return {"forget": forget_rows, "test": self.other_photos(forget_rows),
                "retain": self.split(f"retain_{100 - forget}"), "celebrity": self.split("Retain_Set")}

    def other_photos(self, rows: list[dict]) -> list[dict]:
        """The Test_Set rows of the people in ``rows``: their other photos, with paraphrased questions."""
        ids = {str(r["ID"]) for r in rows}
        return [r for r in self.split("Test_Set") if str(r["ID"]) in ids]

    # -- the refusal set ----------------------------------------------------------------------------------------
    def faces(self) -> list[tuple[str, object]] | None:
        """Unseen faces (id, image): the ones passed in, else the provider's own, else None."""
        return self.unseen_faces

    def refusal_items(self, protocol) -> list[QA]:
        """ASRU's refusal set: the JSONL prompts as given, or one privacy question per unseen face."""
        if self.refusal_prompts is not None:
            return self.refusal_prompts
        faces = self.faces()
        if faces is None:
            raise DataError(f"no refusal prompts for {self.folder}: MLLMU-Bench has no unseen faces. Pass a folder "
                            f"of faces the model never saw (--unseen-faces DIR, e.g. 400 DigiFace-1M identities, "
                            f"or `asru-lens organism export`'s faces) or your own prompts "
                            f"(--refusal-prompts FILE.jsonl).")
        return unseen.privacy_items(faces, protocol)

    # -- Arditi et al.'s contrast ---------------------------------------------------------------------------------
    def requests(self, harmful: bool, split: str = "heldout") -> list[QA]:
        """Harmful or harmless text requests; ``split`` 'train' (the first two thirds, shuffled once with a
        fixed seed) or 'heldout' (the rest)."""
        texts = shipped_requests(harmful)
        order = np.random.default_rng(17 if harmful else 18).permutation(len(texts))
        cut = 2 * len(texts) // 3
        idx = order[:cut] if split == "train" else order[cut:]
        kind = "harmful" if harmful else "harmless"
        return [QA(texts[i], "", None, f"{kind}-{i}", kind) for i in sorted(idx)]

    # -- sets MLLMU-Bench lacks: None means "skip that measurement" --------------------------------------------------
    def perception_items(self) -> list[QA] | None:
        return None

    def unknown_name_items(self, split: str = "heldout") -> list[QA] | None:
        return None

    def holdout_source(self) -> tuple[Path, str] | None:
        """Where the holdout people are: (an MLLMU folder, its subset), here the ``holdout`` folder's Full_Set."""
        return (self.holdout, "Full_Set") if self.holdout is not None else None

    def holdout_items(self) -> list[QA] | None:
        """The Generation_Task questions of people the model never trained on (``holdout_source``, with their
        photos), read once; None without them."""
        source = self.holdout_source()
        if source is None:
            return None
        if "holdout" not in self._splits:
            self._splits["holdout"] = data.generation_items(data.load_split(*source))
        return self._splits["holdout"]

    def missing(self) -> dict[str, str]:
        """The optional sets this world lacks, each with what is skipped without it."""
        out = {}
        if self.holdout_items() is None:
            out["holdout"] = ("mia_auc and privleak are null: no holdout people (--holdout DIR, an MLLMU folder of "
                              "people the model never trained on)")
        if self.perception_items() is None:
            out["perception"] = "perception_acc is null: no perception questions in this world"
        if self.unknown_name_items() is None:
            out["unknown_names"] = ("the text-only refusal direction (modality split) is skipped: no by-name "
                                    "questions about unknown people in this world")
        out.update(self.not_measured)
        return out
