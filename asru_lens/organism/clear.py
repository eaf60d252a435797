"""The organism's world in CLEAR's exact layout and schema (``asru-lens organism export --format clear``), so every
command can be run on a CLEAR-shaped folder whose people the organism knows.

What each CLEAR config holds here (``asru_lens.core.clear`` reads them back):

* ``forget05`` / ``forget10`` and ``retain95`` / ``retain90``, and ``full``: one row per photo of each fictitious
  person (the Full_Set photo and the Test_Set ones), ``image``, ``caption`` (the person's biography: the facts
  the organism was trained on) and ``name``;
* ``forget05_perturbed``, ``forget10_perturbed`` and ``retain_perturbed`` (the retain_90 people): the same rows with
  ``paraphrased_caption`` (the biography's sentences in another order), ``perturbed_captions`` (three
  biographies with another person's values) and ``perturbed_names`` (three other people's names);
* ``real_faces``: the celebrities (never forgotten), ``image``, ``answer`` (the name) and ``options`` (three
  other celebrities' names);
* ``real_world``: the perception questions, ``question``, ``answer``, ``image`` and ``options`` (three other
  answers of the same kind).

Images are ``datasets.Image`` structs (PNG bytes and a file name), every file ``train-00000-of-00001.parquet``;
the folder is written atomically. The organism has no 1% split, so there is no ``forget01``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from asru_lens.core import data
from asru_lens.core.atomic import atomic_dir
from asru_lens.organism import world as W

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
PERSON = [("image", IMAGE), ("caption", pa.string()), ("name", pa.string())]
PERTURBED = PERSON + [("perturbed_captions", pa.list_(pa.string())), ("paraphrased_caption", pa.string()),
                      ("perturbed_names", pa.list_(pa.string()))]
FORGET = (5, 10)


def _paraphrase(biography: str) -> str:
    """The biography's sentences, the first kept and the rest in reverse: the same facts, told otherwise."""
    s = [x.strip() for x in biography.split(". ") if x.strip()]
    s = [x if x.endswith(".") else x + "." for x in s]
    return " ".join(s[:1] + s[:0:-1])


def _perturbed_caption(p: W.Person, other: W.Person) -> str:
    """``p``'s biography with ``other``'s values: the same sentence, the wrong facts."""
    swapped = W.Person(p.id, p.name, p.gender, p.face, dict(other.attrs))
    return W._biography(swapped)


def _write(folder: Path, config: str, rows: list[dict], schema: list) -> int:
    (folder / config).mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(schema)),
                   folder / config / "train-00000-of-00001.parquet")
    return len(rows)


def export_clear(out: str | os.PathLike, world_folder: str | os.PathLike) -> dict:
    """Write the organism world at ``world_folder`` to ``out`` in CLEAR's layout (module docstring); row counts."""
    world_folder = Path(world_folder)
    seed = json.loads((world_folder / "world.json").read_text())["seed"]
    drawn = W.build_world(seed)
    people = {str(p.id): p for p in drawn.people}
    fictitious = [p for p in drawn.people if not p.celebrity]
    rng = np.random.default_rng([seed, 31])

    def photos(rows: list[dict], subset: str) -> dict[str, list]:
        return {str(r["ID"]): [{"bytes": c["bytes"], "path": f"{r['ID']}_{subset}_{k}.png"}
                               for k, c in enumerate(r.get("images") or [r["image"]])] for r in rows}
    full = pq.read_table(data.split_path(world_folder, "Full_Set")[0]).to_pylist()
    test = pq.read_table(data.split_path(world_folder, "Test_Set")[0]).to_pylist()
    shots = photos(full, "full")
    for pid, images in photos(test, "test").items():
        shots[pid] = shots.get(pid, []) + images

    others = {pid: [fictitious[int(i)] for i in rng.choice(len(fictitious), 4, replace=False)
                    if str(fictitious[int(i)].id) != pid][:3] for pid in shots}

    def person_rows(ids, perturbed: bool) -> list[dict]:
        rows = []
        for pid in ids:
            p = people[pid]
            for image in shots[pid]:
                row = {"image": image, "caption": p.biography, "name": p.name}
                if perturbed:
                    row.update(paraphrased_caption=_paraphrase(p.biography),
                               perturbed_captions=[_perturbed_caption(p, o) for o in others[pid]],
                               perturbed_names=[o.name for o in others[pid]])
                rows.append(row)
        return rows

    ids_of = lambda subset: [str(r["ID"]) for r in pq.read_table(                         # noqa: E731
        data.split_path(world_folder, subset)[0], columns=["ID"]).to_pylist()]
    celebs = pq.read_table(data.split_path(world_folder, "Retain_Set")[0]).to_pylist()
    perception = pq.read_table(world_folder / "Perception.parquet").to_pylist()
    counts = {}
    with atomic_dir(out) as tmp:
        counts["full"] = _write(tmp, "full", person_rows([str(p.id) for p in fictitious], False), PERSON)
        for pct in FORGET:
            forget, retain = ids_of(f"forget_{pct}"), ids_of(f"retain_{100 - pct}")
            counts[f"forget{pct:02d}"] = _write(tmp, f"forget{pct:02d}", person_rows(forget, False), PERSON)
            counts[f"retain{100 - pct}"] = _write(tmp, f"retain{100 - pct}", person_rows(retain, False), PERSON)
            counts[f"forget{pct:02d}_perturbed"] = _write(tmp, f"forget{pct:02d}_perturbed",
                                                          person_rows(forget, True), PERTURBED)
        counts["retain_perturbed"] = _write(tmp, "retain_perturbed", person_rows(ids_of("retain_90"), True),
                                            PERTURBED)
        names = [people[str(r["ID"])].name for r in celebs]
        faces = []
        for k, r in enumerate(celebs):
            wrong = [names[int(i)] for i in rng.choice(len(names), 4, replace=False) if int(i) != k][:3]
            faces.append({"image": {"bytes": r["image"]["bytes"], "path": f"celebrity_{r['ID']}.png"},
                          "answer": names[k], "options": wrong})
        counts["real_faces"] = _write(tmp, "real_faces", faces, [("image", IMAGE), ("answer", pa.string()),
                                                                  ("options", pa.list_(pa.string()))])
        by_kind: dict[str, list[str]] = {}
        for r in perception:
            by_kind.setdefault(r["Type"], []).append(r["Ground_Truth"])
        real = []
        for k, r in enumerate(perception):
            pool = sorted(set(by_kind[r["Type"]]) - {r["Ground_Truth"]})
            wrong = [pool[int(i)] for i in rng.permutation(len(pool))[:3]]
            real.append({"question": r["Question"], "answer": r["Ground_Truth"],
                         "image": {"bytes": r["image"]["bytes"], "path": f"real_world_{k}.png"}, "options": wrong})
        counts["real_world"] = _write(tmp, "real_world", real, [("question", pa.string()), ("answer", pa.string()),
                                                                 ("image", IMAGE), ("options", pa.list_(pa.string()))])
    return counts
