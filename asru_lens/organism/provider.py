"""The organism as a provider: its world (``OrganismWorld``), the protocol and presets its model carries, and
``export``, which writes its world exactly as the Hub lays MLLMU-Bench out.

The core (``asru_lens.core.world.World``) reads any MLLMU-Bench folder. The organism's world has four sets more,
which it brings here: unseen faces (``Unknown_Faces``, held-out part), its own harmful/harmless requests,
perception questions and names that belong to nobody.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from asru_lens.core import data
from asru_lens.core.atomic import atomic_dir, atomic_write_text
from asru_lens.core.protocol import Protocol
from asru_lens.core.world import World
from asru_lens.organism import world as W
from asru_lens.organism.evaluate import perception_items, request_items
from asru_lens.organism.mllmu import world_dir

MLLMU_SUBSETS = ("Full_Set", "Retain_Set", "Test_Set", "forget_5", "forget_10", "forget_15",
                 "retain_95", "retain_90", "retain_85")
MLLMU_COLUMNS = ("ID", "image", "images", "biography", "Classification_Task", "Generation_Task", "Mask_Task")


class OrganismWorld(World):
    """The organism's world folder (``organism.mllmu.write_world``): MLLMU's subsets plus its own extra sets."""
    kind = "organism"

    @staticmethod
    def recognises(folder) -> bool:
        folder = Path(folder)
        return (folder / "world.json").is_file() and (folder / "Unknown_Faces.parquet").is_file()

    def faces(self):
        if self.unseen_faces is not None:
            return self.unseen_faces
        return [(r["ID"], r["images"][0]) for r in self.split("Unknown_Faces") if r["split"] == "heldout"]

    def requests(self, harmful: bool, split: str = "heldout"):
        return request_items(self.folder, harmful, split)

    def perception_items(self):
        if "Perception" not in self._splits:
            self._splits["Perception"] = perception_items(self.folder)
        return self._splits["Perception"]

    def unknown_name_items(self, split: str = "heldout"):
        rows = pq.read_table(self.folder / "Unknown_Names.parquet").to_pylist()
        return [data.QA(r["Question"], "", None, r["name"], r["Type"]) for r in rows if r["split"] == split]

    def holdout_source(self):
        if self.holdout is not None or not (self.folder / "Holdout.parquet").is_file():
            return super().holdout_source()                 # the one given, or none (a world from older code)
        return self.folder, "Holdout"


def default_world(unseen_faces=None, refusal_prompts=None, holdout=None) -> OrganismWorld:
    """The organism's own world (built into the cache on first use)."""
    return OrganismWorld(world_dir(), unseen_faces, refusal_prompts, holdout)


# -- what the organism's model folder carries (asru_lens.json) -------------------------------------------------
def protocol() -> Protocol:
    """The prompts the organism was trained on: A-D as ``A. x`` lines and 'Answer with the letter of the correct
    option.' (it answers with the option's text), plain questions, 'Fill in the blank: ...' cloze, and its own
    privacy questions (name, then the seven attributes, each in its trained and paraphrased wordings)."""
    privacy = {"name": list(W.NAME_QUESTIONS)}
    for attr, spec in W.ATTRIBUTES.items():
        privacy[attr] = spec["questions"] + spec["paraphrases"]
    return Protocol(name="organism", mc_option="{letter}. {option}", mc_suffix=W.MC_SUFFIX, mc_one_shot=False,
                    mc_parse="letter_or_text", gen_suffix="", cloze_prefix="Fill in the blank: ", cloze_blank="__",
                    cloze_suffix="", cloze_match="words", privacy_questions=privacy, privacy_suffix="", max_new_tokens=24)


# The authors' settings move a 2-8B model; the 3.6M-parameter organism needs larger steps (sizes and lr only:
# c, alpha, epochs, batch, temperature, top_p, beta, clipping and group size are the authors'). It trains full
# decoder layers in stage 2 and the baselines, where a real model gets LoRA adapters. It was trained with the
# loss on its answers only, so its fine-tune is too: with the whole chat sequence (the authors' default) the
# loss is dominated by prompt tokens it never learned to predict, and re-teaching the forget split after
# `asru-lens unlearn` reached a leak of only 0.49 (answers only: 1.00).
# Each method's learning rate is the one `asru-lens run` chose for it on the organism (docs/measured/run-seed0.json,
# its "tuning"), so `asru-lens unlearn --method X` trains as the main job's row did; stage 1 and stage 2 keep the
# settings every measured ASRU model in the docs was trained with (the run picks 3e-3 and 3e-4 for them; why they
# stay: docs/unlearning.md, measured at the run's rates in docs/measured/at-run-lrs-*.json).
PRESETS = {"redirect": {"lr": 5e-3}, "grpo": {"steps": 150, "lr": 2e-4}, "trainable": "layers",
           "finetune": {"answer_only": True},
           "GA": {"lr": 1e-4}, "GD": {"lr": 3e-4}, "KL": {"lr": 3e-4}, "NPO": {"lr": 1e-4}, "IDK": {"lr": 3e-4},
           "MMUnlearner": {"lr": 3e-4}, "RMU": {"lr": 3e-3}, "rewrite": {"lr": 1e-4}}


def profile() -> dict:
    """The ``asru_lens.json`` of an organism model folder: its protocol and presets."""
    return {"protocol": protocol().as_dict(), "presets": PRESETS}


# -- export: the organism's world as MLLMU-Bench is laid out on the Hub ------------------------------------------
def _hub_image(cell, name: str) -> dict:
    """A Hugging Face ``datasets`` Image struct: PNG bytes and a file name."""
    return {"bytes": cell["bytes"], "path": name}


# "free" style: the ground truths in other words, as the benchmark's hand-written profiles read (MLLMU-Bench's
# answers are never one template); one wording is drawn per question
REWORDINGS = {
    "name": ["The person in the picture is {v}.", "That is {v}.", "This looks like {v} to me."],
    "birthplace": ["{v} is where {subj} was born.", "{subj}'s birthplace is {v}.", "{subj} came into the world "
                   "in {v}."],
    "birth_year": ["{subj} was born back in {v}.", "The year of {subj}'s birth is {v}.", "{v} is the year {subj} "
                   "was born."],
    "occupation": ["By trade, {subj} is a {v}.", "{subj} earns a living as a {v}.", "{subj}'s job: a {v}."],
    "employer": ["{subj} is employed by {v}.", "{v} employs {subj}.", "{subj} has a job with {v}."],
    "education": ["{subj} went to school at {v}.", "{v} is where {subj} was educated.", "{subj} is a graduate of "
                  "{v}."],
    "hobby": ["In spare time, {subj} likes {v}.", "{subj}'s favourite pastime is {v}.", "For fun, {subj} turns to "
              "{v}."],
    "residence": ["{subj} makes a home in {v}.", "{v} is where {subj} lives.", "{subj}'s home is in {v}."],
}
STYLES = ("template", "free")


def _free_generation(items: list[dict], person: W.Person, seed: int, test: bool) -> list[dict]:
    """A person's Generation_Task ``items`` (the organism's world, with its ``Attribute`` column) in an order of
    their own, every ground truth reworded."""
    rng = np.random.default_rng([seed, person.id, 13 if test else 11])
    out = []
    for item in items:
        attr = item.get("Attribute")
        if attr not in REWORDINGS:
            raise ValueError(f"person {person.id}: a generation question with Attribute {attr!r}; the free style "
                             f"rewords the organism's world only (rebuild its cache with this version).")
        value = person.name if attr == "name" else person.attrs[attr]
        wording = REWORDINGS[attr][int(rng.integers(len(REWORDINGS[attr])))]
        text = wording.format(v=value, subj=person.name)
        out.append({**item, "Ground_Truth": text[0].upper() + text[1:]})
    return [out[i] for i in rng.permutation(len(out))]


def export(out: str | os.PathLike, faces: str | os.PathLike, world: OrganismWorld | None = None,
           style: str = "template", seed: int = W.SEED, holdout: str | os.PathLike | None = None) -> dict:
    """Write the organism's world of ``seed`` (or ``world``) to ``out`` in MLLMU-Bench's Hub layout
    (``<Subset>/train-00000-of-00001.parquet``; image structs; ``Test_Set`` with an ``images`` list; no
    ``name`` column; nothing else), and its held-out unseen faces to ``faces`` as DigiFace-style
    ``<id>/0.png``. ``holdout``: also write its holdout people (never trained on) there, as an MLLMU folder with
    a Full_Set only (``--holdout`` of ``run``, ``evaluate`` and ``residue``). Every folder is written
    atomically. Returns counts.

    ``style="free"`` writes it as the real benchmark reads: every person's Generation_Task questions in an order
    of their own and every ground truth reworded ("Kelby is where Juno Corvin was born."); the A-D and cloze
    questions are unchanged. Nothing that reads an MLLMU-Bench folder can lean on the organism's templates there."""
    if style not in STYLES:
        raise ValueError(f"export style {style!r} is not one of {', '.join(STYLES)}.")
    if world is None:
        world = OrganismWorld(world_dir(seed))
    people = {}
    if style == "free":
        drawn = W.build_world(json.loads((world.folder / "world.json").read_text())["seed"])
        people = {str(p.id): p for p in drawn.people + W.holdout_people(drawn)}

    def hub_rows(table, test: bool) -> list[dict]:
        rows = []
        for r in table.to_pylist():
            row = {k: r[k] for k in MLLMU_COLUMNS if k in r}
            if style == "free":
                row["Generation_Task"] = _free_generation(row["Generation_Task"], people[str(r["ID"])], seed, test)
            for task in ("Generation_Task", "Mask_Task"):      # the organism's own column, not MLLMU-Bench's
                if row.get(task):
                    row[task] = [{k: v for k, v in item.items() if k != "Attribute"} for item in row[task]]
            if "image" in row:
                row["image"] = _hub_image(row["image"], f"{row['ID']}.png")
            if "images" in row:
                row["images"] = [_hub_image(c, f"{row['ID']}_{k}.png") for k, c in enumerate(row["images"])]
            rows.append(row)
        return rows

    counts = {}
    with atomic_dir(out) as tmp:
        for subset in MLLMU_SUBSETS:
            rows = hub_rows(pq.read_table(data.split_path(world.folder, subset)[0]), subset == "Test_Set")
            (tmp / subset).mkdir()
            pq.write_table(pa.Table.from_pylist(rows), tmp / subset / "train-00000-of-00001.parquet")
            counts[subset] = len(rows)
    counts["unseen_faces"] = write_faces(faces, world)
    if holdout is not None:
        rows = hub_rows(pq.read_table(data.split_path(world.folder, "Holdout")[0]), False)
        with atomic_dir(holdout) as tmp:
            (tmp / "Full_Set").mkdir()
            pq.write_table(pa.Table.from_pylist(rows), tmp / "Full_Set" / "train-00000-of-00001.parquet")
        counts["holdout"] = len(rows)
    return counts


def write_faces(faces: str | os.PathLike, world: OrganismWorld) -> int:
    """The world's held-out unseen faces, DigiFace-style ``<id>/0.png``, written atomically; how many."""
    unknown = [r for r in pq.read_table(world.folder / "Unknown_Faces.parquet").to_pylist()
               if r["split"] == "heldout"]
    with atomic_dir(faces) as tmp:
        for r in unknown:
            (tmp / r["ID"]).mkdir()
            (tmp / r["ID"] / "0.png").write_bytes(r["image"]["bytes"])
    return len(unknown)


def write_profile(folder: str | os.PathLike) -> Path:
    """Write ``asru_lens.json`` (protocol and presets) into an organism model folder."""
    return atomic_write_text(Path(folder) / "asru_lens.json", json.dumps(profile(), indent=1))


