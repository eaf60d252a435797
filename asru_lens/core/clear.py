"""CLEAR ("Character Unlearning in Textual and Visual Modalities", arXiv 2410.18057; Hub ``therem/CLEAR``), read
as a world: the same contract every command reads an MLLMU-Bench folder through.

CLEAR's layout is one folder per config, each holding ``train-*.parquet`` (a single ``train`` split):

=====================  =======================================================================================
``forget01/05/10``     ``image``, ``caption``, ``name``: one photo of a fictitious person and its caption per row
``retain99/95/90``     the same, for the other people
``full``               every person (optional here: the forget and retain configs cover it)
``*_perturbed``        ``forgetXX_perturbed`` and ``retain_perturbed`` add ``paraphrased_caption``,
                       ``perturbed_captions`` and ``perturbed_names`` (lists of strings)
``real_faces``         ``image``, ``answer`` (a real person's name) and ``options`` (the wrong names)
``real_world``         ``image``, ``question``, ``answer`` and ``options``
``*+tofu``             TOFU's text QA beside the captions (``question``, ``answer``, no ``name``): not read
=====================  =======================================================================================

Mapped to our contract (``World``), with nothing read into a row's position:

* a **person** is a ``name``; each CLEAR row (one photo) becomes one record of that person, with two photo
  questions as Generation_Task: a caption prompt (one of the nine CLEAR and MMUnlearner use, picked by a hash of
  the caption) answered by the caption, and the name question answered by the name;
* **A-D** is MMUnlearner's name recognition: the name among its ``perturbed_names`` (the first three), at a
  position drawn from a hash of the row, on the rows the perturbed configs hold. MMUnlearner asks it as A-D and
  reads the letter generated (``cls_acc``); CLEAR's own evaluation reads the same options by likelihood, each name
  as the answer to "The name of the person on the image is " (``NAME_PROMPT``; ``name_acc`` and ``name_prob``,
  ``asru_lens.measure.evaluate.name_recognition``);
* the splits: ``forget`` is ``forgetXX``, ``retain`` is ``retain{100-XX}``, ``test`` is the forget people's rows
  in ``forgetXX_perturbed`` asked for the *paraphrased* caption, and ``celebrity`` is ``real_faces`` (real
  people, never forgotten: the name question and its A-D);
* ``real_world`` is the world's perception set (questions answered from the picture);
* there is no attribute column, no cloze and no text QA per person.

``ClearWorld.recognises`` tells CLEAR's layout apart from MLLMU-Bench's; ``asru_lens.open_world`` picks it.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import pyarrow.parquet as pq

from asru_lens.core.data import QA, DataError, decode_image
from asru_lens.core.world import World

FORGET_SPLITS = (1, 5, 10)
NEEDED = {"real_faces": "the celebrity set (real people, never forgotten: celebrity_cls_acc and the utility on "
                        "them)",
          "retain_perturbed": "the retain people's name A-D (retain_cls_acc, and the A-D probe's training set)"}
# CLEAR's and MMUnlearner's caption prompts (MMUnlearner data_process/CLEAR_process.py, somvy/multimodal_unlearning)
CAPTION_PROMPTS = ("What can you see in this picture?", "Tell me about the content of this image",
                   "Can you give a description of the image?", "What is depicted in the image?",
                   "Explain what you observe in the picture.", "Describe the image in detail.",
                   "What is the main subject of this image?", "Can you describe the scene or objects in the image?",
                   "What is happening in this image?")
NAME_QUESTION = "What is the name of the person in the image?"      # MMUnlearner's CLEAR_eval.py
# CLEAR's own face recognition (somvy/multimodal_unlearning mm/dataset.py, "random_faces"): the name and its
# perturbed names each scored as the answer to this prompt
NAME_PROMPT = "The name of the person on the image is "


def config_files(folder: Path, config: str) -> list[Path]:
    """The parquet files of one CLEAR config (``folder/config/*.parquet``), or []."""
    where = Path(folder) / config
    return sorted(where.glob("*.parquet")) if where.is_dir() else []


def _pick(text: str, n: int) -> int:
    return zlib.crc32(text.encode("utf-8")) % n


def name_options(name: str, perturbed: list, key: str) -> tuple[dict, str]:
    """MMUnlearner's name A-D: the name among (up to three of) its perturbed names, at a position drawn from
    ``key``; (options by letter, the right letter)."""
    wrong = [str(p) for p in perturbed if p and str(p) != name][:3]
    at = _pick(key, len(wrong) + 1)
    names = wrong[:at] + [name] + wrong[at:]
    letters = "ABCD"[:len(names)]
    return dict(zip(letters, names)), letters[at]


def _record(name: str, image, generation: list[dict], wrong_names: list | None, key: str) -> dict:
    """One CLEAR photo as a record of our contract: its generation questions and, given wrong names, the name A-D
    (``name_options``, the position drawn from ``key``)."""
    mc = []
    if wrong_names:
        options, letter = name_options(name, wrong_names, key)
        mc.append({"Question": NAME_QUESTION, "Options": options, "Correct_Answer": letter})
    return {"ID": name, "name": name, "biography": "", "images": [image],
            "Classification_Task": {"Image_Textual_Questions": mc, "Pure_Text_Questions": []},
            "Generation_Task": generation, "Mask_Task": []}


class ClearWorld(World):
    """A CLEAR download (``therem/CLEAR``'s configs as folders), read through the same contract as MLLMU-Bench."""
    kind = "clear"
    name_prompt = NAME_PROMPT
    name_is_a_fact = True
    not_measured = {"cloze": "cloze_acc is n/a: CLEAR has no fill-in-the-blank questions",
                    "text_qa": "cls_acc_text is n/a: CLEAR's people have no text-only A-D (its +tofu configs are "
                               "TOFU's authors, not read)"}

    @staticmethod
    def recognises(folder) -> bool:
        folder = Path(folder)
        return folder.is_dir() and any(config_files(folder, f"forget{p:02d}") for p in FORGET_SPLITS)

    def check_layout(self) -> None:
        """CLEAR's configs this world needs, named now (before any model work) when one is missing."""
        folder = self.folder
        if not self.recognises(folder):
            raise DataError(f"{folder} is not a CLEAR folder: no forget01/, forget05/ or forget10/ with parquet "
                            f"files (CLEAR's Hub layout: one folder per config, train-00000-of-00001.parquet).")
        for config, why in NEEDED.items():
            if not config_files(folder, config):
                raise DataError(f"CLEAR folder {folder} has no {config}/ config: it is needed for {why}. Download "
                                f"it with the others (`hf download therem/CLEAR --repo-type dataset --include "
                                f"'{config}/*'`).")
        self.forget_splits = tuple(p for p in FORGET_SPLITS if config_files(folder, f"forget{p:02d}")
                                   and config_files(folder, f"retain{100 - p}"))
        if not self.forget_splits:
            raise DataError(f"CLEAR folder {folder}: no forgetNN/ with its retain(100-NN)/ beside it (e.g. forget05 "
                            f"and retain95).")

    # -- CLEAR's configs, each read once, as our records --------------------------------------------------------
    def _table(self, config: str) -> list[dict]:
        key = ("clear", config)
        if key not in self._splits:
            rows = []
            for path in config_files(self.folder, config):
                try:
                    table = pq.read_table(path)
                except Exception as e:        # pyarrow raises several types for a bad file
                    raise DataError(f"{path}: not a readable parquet file ({e}). Re-download it.") from e
                rows += table.to_pylist()
            self._splits[key] = rows
        return self._splits[key]

    def _perturbed(self, config: str) -> dict:
        """(name, caption) -> the perturbed row, for the rows a perturbed config holds."""
        return {(r.get("name"), r.get("caption")): r for r in self._table(config)}

    def _records(self, config: str, perturbed: str | None, test: bool = False) -> list[dict]:
        """One record per CLEAR row of ``config`` (see the module docstring)."""
        extra = self._perturbed(perturbed) if perturbed and config_files(self.folder, perturbed) else {}
        out = []
        for i, r in enumerate(self._table(config)):
            where = f"{self.folder / config} row {i}"
            missing = [c for c in ("image", "caption", "name") if c not in r]
            if missing:
                raise DataError(f"{where}: no {', '.join(missing)} column; CLEAR's person configs have image, "
                                f"caption and name.")
            name, caption = str(r["name"]), str(r["caption"])
            p = r if test else extra.get((r["name"], r["caption"]))
            answer = str(p["paraphrased_caption"]) if test else caption
            gen = [{"Question": CAPTION_PROMPTS[_pick(caption, len(CAPTION_PROMPTS))], "Ground_Truth": answer,
                    "Type": "Image_Textual"},
                   {"Question": NAME_QUESTION, "Ground_Truth": name, "Type": "Image_Textual"}]
            wrong = p.get("perturbed_names") if p is not None else None
            out.append(_record(name, decode_image(r["image"], where), gen, wrong, name + caption))
        return out

    def _real_faces(self) -> list[dict]:
        out = []
        for i, r in enumerate(self._table("real_faces")):
            where = f"{self.folder / 'real_faces'} row {i}"
            name = str(r["answer"])
            out.append(_record(name, decode_image(r["image"], where), [
                {"Question": NAME_QUESTION, "Ground_Truth": name, "Type": "Image_Textual"}],
                list(r.get("options") or []), name + str(i)))
        return out

    def split(self, name: str) -> list[dict]:
        """MLLMU's subset names on CLEAR's configs: ``forget_N`` (forgetNN), ``retain_N`` (retainNN, with the
        name A-D of ``retain_perturbed``), ``Full_Set`` (``full``, else every forget and retain person),
        ``Retain_Set`` (``real_faces``) and ``Test_Set`` (the forget people's rows in ``forgetXX_perturbed``)."""
        if name in self._splits:
            return self._splits[name]
        kind, _, pct = name.partition("_")
        config = f"forget{int(pct):02d}" if kind == "forget" and pct.isdigit() else f"retain{pct}"
        if kind in ("forget", "retain") and pct.isdigit() and not config_files(self.folder, config):
            raise DataError(f"CLEAR folder {self.folder}: no {config}/ config (it has forget splits "
                            f"{', '.join(map(str, self.forget_splits))}).")
        if kind == "forget" and pct.isdigit():
            rows = self._records(config, f"{config}_perturbed")
        elif kind == "retain" and pct.isdigit():
            rows = self._records(config, "retain_perturbed")
        elif name == "Full_Set":
            rows = (self._records("full", None) if config_files(self.folder, "full") else
                    self.split(f"forget_{max(self.forget_splits)}") + self.split(f"retain_{100 - max(self.forget_splits)}"))
        elif name == "Retain_Set":
            rows = self._real_faces()
        elif name == "Test_Set":
            big = max(p for p in FORGET_SPLITS if config_files(self.folder, f"forget{p:02d}_perturbed")) \
                if any(config_files(self.folder, f"forget{p:02d}_perturbed") for p in FORGET_SPLITS) else None
            rows = self._records(f"forget{big:02d}_perturbed", None, test=True) if big else []
        else:
            raise DataError(f"CLEAR folder {self.folder}: no subset {name!r}; it has forget_N / retain_(100-N) for N "
                            f"in {', '.join(map(str, self.forget_splits))}, Full_Set, Retain_Set and Test_Set.")
        self._splits[name] = rows
        return rows

    def rows(self, forget: int = 10) -> dict[str, list[dict]]:
        forget_rows = self.split(f"forget_{self.check_forget(forget)}")
        return {"forget": forget_rows, "test": self.other_photos(forget_rows),
                "retain": self.split(f"retain_{100 - forget}"), "celebrity": self.split("Retain_Set")}

    def perception_items(self) -> list[QA] | None:
        """``real_world``: questions answered from the picture (None without it)."""
        if not config_files(self.folder, "real_world"):
            return None
        if "real_world" not in self._splits:
            self._splits["real_world"] = [
                QA(str(r["question"]), str(r["answer"]), decode_image(r["image"], f"{self.folder / 'real_world'} row "
                                                                                    f"{i}"), f"real_world-{i}",
                   "real_world") for i, r in enumerate(self._table("real_world"))]
        return self._splits["real_world"]

    def missing(self) -> dict[str, str]:
        out = super().missing()
        if "perception" in out:
            out["perception"] = "perception_acc is null: no real_world config in this CLEAR folder"
        return out
