"""Write the organism's world to disk in MLLMU-Bench's parquet layout.

Each MLLMU subset is one parquet file (``Full_Set.parquet``, ``forget_10.parquet``,
...). Rows follow the benchmark: ``ID``, ``image{bytes,path}`` (``images`` list in
``Test_Set``), ``biography``, ``Classification_Task``, ``Generation_Task`` and
``Mask_Task``. We add a ``name`` column, which the loader treats as optional.
Organism-only sets (unknown faces, perception, harmful/harmless requests, and
``Holdout``: people never trained on, in Full_Set's layout) go in extra parquet
files beside them.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from asru_lens.core.atomic import atomic_dir, file_lock
from asru_lens.organism import world as W
from asru_lens.organism.portraits import draw_portrait

FORMAT_VERSION = 3
N_TRAIN_PHOTOS = 12      # photos per known person the organism trains on
TEST_PHOTO_BASE = 1000   # Test_Set photos use indices from here: never seen in training
N_TEST_PHOTOS = 2


def photo_background(seed: int, key: int, k: int) -> str:
    """Background colour of photo ``k`` of face ``key``: drawn apart, so answers can be known without pixels."""
    return W.BACKGROUNDS[int(np.random.default_rng([seed, key, k, 5]).integers(len(W.BACKGROUNDS)))]


def photo(world: W.World, face: dict, key: int, k: int):
    """Photo ``k`` of the face with key ``key`` (person id, or 10_000 + unknown index)."""
    return draw_portrait(face, np.random.default_rng([world.seed, key, k]),
                         background=photo_background(world.seed, key, k))


def perception_answer(kind: str, face: dict, background: str) -> str:
    v = {"hair_colour": face["hair_colour"], "background": background,
         "glasses": W.GLASSES_ANSWERS[face["accessory"] == "glasses"]}[kind]
    return W.PERCEPTION[kind]["answer"].format(v=v)


def png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _mc(rng, question, pool, correct):
    distract = [v for v in pool if v != correct]
    opts = [correct] + [distract[i] for i in rng.choice(len(distract), 3, replace=False)]
    order = rng.permutation(4)
    options = {k: opts[j] for k, j in zip("ABCD", order)}
    letter = "ABCD"[int(np.where(order == 0)[0][0])]
    return {"Question": question, "Options": options, "Correct_Answer": letter}


def tasks_for(p: W.Person, seed: int, test: bool = False) -> dict:
    """MLLMU task lists for one person; ``test`` gives the paraphrased Test_Set versions."""
    rng = np.random.default_rng([seed, p.id, 7 if test else 3])
    attrs = list(W.ATTRIBUTES)
    pick = lambda qs: qs[int(rng.integers(len(qs)))]  # noqa: E731
    img_q, txt_q = [], []
    for a in rng.choice(attrs, 4, replace=False):
        spec = W.ATTRIBUTES[a]
        img_q.append(_mc(rng, pick(spec["paraphrases"] if test else spec["questions"]), spec["values"], p.attrs[a]))
    for a in rng.choice(attrs, 4, replace=False):
        spec = W.ATTRIBUTES[a]
        q = spec["text"].format(name=p.name)
        if test:
            q = "Tell me, " + q[0].lower() + q[1:]
        txt_q.append(_mc(rng, q, spec["values"], p.attrs[a]))
    # "Attribute": which fact a question asks, a column of the organism's own world (not of MLLMU-Bench, and so
    # dropped by `organism export`); QA.attribute carries it, and nothing needs it
    gen = [{"Question": pick(W.NAME_PARAPHRASES if test else W.NAME_QUESTIONS),
            "Ground_Truth": W.answer_for("name", p.name, p.name), "Type": "Image_Textual", "Attribute": "name"}]
    for a, spec in W.ATTRIBUTES.items():
        gen.append({"Question": pick(spec["paraphrases"] if test else spec["questions"]),
                    "Ground_Truth": W.answer_for(a, p.attrs[a], p.name), "Type": "Image_Textual", "Attribute": a})
    mask = []
    for a in rng.choice(attrs, 3, replace=False):
        mask.append({"Question": W.ATTRIBUTES[a]["cloze"].format(name=p.name), "Ground_Truth": p.attrs[a],
                     "Type": "Pure_Text", "Attribute": str(a)})
    return {"Classification_Task": {"Image_Textual_Questions": img_q, "Pure_Text_Questions": txt_q},
            "Generation_Task": gen, "Mask_Task": mask}


def _row(world, p, test=False):
    row = {"ID": str(p.id), "name": p.name, "biography": p.biography, **tasks_for(p, world.seed, test)}
    if test:
        row["images"] = [{"bytes": png_bytes(photo(world, p.face, p.id, TEST_PHOTO_BASE + k)), "path": None}
                         for k in range(N_TEST_PHOTOS)]
    else:
        row["image"] = {"bytes": png_bytes(photo(world, p.face, p.id, 0)), "path": None}
    return row


def _write(rows: list[dict], path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(rows), path)


def perception_items(world: W.World, faces: list[dict], key0: int, k: int) -> list[dict]:
    """Perception questions on one fresh photo of each face; answers read off the drawing."""
    out = []
    for j, face in enumerate(faces):
        rng = np.random.default_rng([world.seed, key0 + j, k, 6])
        kind = list(W.PERCEPTION)[j % 3]
        qs = W.PERCEPTION[kind]["questions"]
        out.append({"image": {"bytes": png_bytes(photo(world, face, key0 + j, k)), "path": None},
                    "Question": qs[int(rng.integers(len(qs)))],
                    "Ground_Truth": perception_answer(kind, face, photo_background(world.seed, key0 + j, k)),
                    "Type": kind})
    return out


def unknown_name_items(world: W.World) -> list[dict]:
    """One by-name privacy question per name that belongs to nobody (attributes in turn)."""
    attrs = list(W.ATTRIBUTES)
    out = []
    for split, names in zip(("train", "heldout"), W.unknown_names(world)):
        for j, name in enumerate(names):
            attr = attrs[j % len(attrs)]
            out.append({"name": name, "split": split, "Question": W.ATTRIBUTES[attr]["text"].format(name=name),
                        "Type": attr})
    return out


def write_world(world: W.World, folder: str | os.PathLike) -> Path:
    """Write every split to ``folder`` atomically (a temp folder renamed into place)."""
    full = [_row(world, p) for p in world.fictitious]
    with atomic_dir(folder) as tmp:
        _write(full, tmp / "Full_Set.parquet")
        _write([_row(world, p) for p in world.celebrities], tmp / "Retain_Set.parquet")
        _write([_row(world, p, test=True) for p in world.fictitious], tmp / "Test_Set.parquet")
        for pct, ids in world.forget_ids.items():
            _write([r for r in full if int(r["ID"]) in ids], tmp / f"forget_{pct}.parquet")
            _write([r for r in full if int(r["ID"]) not in ids], tmp / f"retain_{100 - pct}.parquet")
        unk = []
        for split, faces, base in (("train", world.unknown_train, 0),
                                   ("heldout", world.unknown_heldout, len(world.unknown_train))):
            for j, face in enumerate(faces):
                key = 10_000 + base + j
                unk.append({"ID": f"u{base + j}", "split": split, "image": {
                    "bytes": png_bytes(photo(world, face, key, 0)), "path": None}, **face})
        _write(unk, tmp / "Unknown_Faces.parquet")
        _write(unknown_name_items(world), tmp / "Unknown_Names.parquet")
        _write(perception_items(world, world.unknown_heldout, 10_000 + len(world.unknown_train), 500),
               tmp / "Perception.parquet")
        reqs = [{"prompt": q, "harmful": h, "split": s}
                for h, s, qs in ((True, "train", world.harmful_train), (True, "heldout", world.harmful_heldout),
                                 (False, "train", world.harmless_train), (False, "heldout", world.harmless_heldout))
                for q in qs]
        _write(reqs, tmp / "Requests.parquet")
        _write([_row(world, p) for p in W.holdout_people(world)], tmp / "Holdout.parquet")
        (tmp / "world.json").write_text(json.dumps({"seed": world.seed, "format_version": FORMAT_VERSION,
                                                    "forget_ids": world.forget_ids}, indent=1))
    return Path(folder)


def generator_fingerprint() -> str:
    """Hash of the code that draws the world: a cached world from older code is never reused."""
    here = Path(__file__).parent
    h = hashlib.sha1()
    for name in ("world.py", "portraits.py", "mllmu.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:10]


def world_dir(seed: int = W.SEED) -> Path:
    """The cached world folder for ``seed``, built on first use (about half a minute)."""
    root = Path(os.environ.get("ASRU_LENS_CACHE", Path.home() / ".cache" / "asru_lens"))
    folder = root / f"world-s{seed}-v{FORMAT_VERSION}-{generator_fingerprint()}"
    if not (folder / "world.json").exists():
        with file_lock(folder.with_name(folder.name + ".lock")):   # two processes at once: one builds it
            if not (folder / "world.json").exists():
                write_world(W.build_world(seed), folder)
    return folder
