"""One loader for MLLMU-Bench: the organism's world or a real download.

A folder holds one parquet file per subset, either flat (``Full_Set.parquet``)
or as the Hub lays it out (``Full_Set/train-00000-of-00001.parquet``). Rows have
``ID``, ``image`` (``images`` in Test_Set), ``biography``, ``Classification_Task``,
``Generation_Task`` and ``Mask_Task``; anything else (our ``name``) is optional.

``load_split`` gives rows with decoded PIL images; the ``*_items`` functions
flatten them into plain question records that every stage consumes.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

SUBSETS = ("Full_Set", "Retain_Set", "Test_Set", "forget_5", "forget_10", "forget_15",
           "retain_95", "retain_90", "retain_85")


class DataError(ValueError):
    """A dataset file or value that cannot be used; the message says which and what to do."""


@dataclass
class QA:
    """One question: image (or None), prompt text, expected answer, and where it came from."""
    question: str
    answer: str
    image: Image.Image | None = None
    id: str = ""
    kind: str = ""            # e.g. Image_Textual, Pure_Text, cloze, or an attribute
    options: dict | None = None
    meta: dict = field(default_factory=dict)
    attribute: str | None = None   # which fact it asks ("birthplace"), where a world provider says; MLLMU-Bench
                                   # has no such column, so nothing may depend on it


def split_path(folder: str | os.PathLike, name: str) -> list[Path]:
    """Parquet file(s) of subset ``name`` in ``folder``, in either layout."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"MLLMU folder {str(folder)!r} does not exist or is not a folder. Pass --data with the "
                        f"folder that holds Full_Set.parquet (or Full_Set/*.parquet).")
    flat = folder / f"{name}.parquet"
    if flat.is_file():
        return [flat]
    nested = sorted((folder / name).glob("*.parquet")) if (folder / name).is_dir() else []
    if nested:
        return nested
    have = sorted(p.stem for p in folder.glob("*.parquet")) + sorted(
        p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.parquet")))
    raise DataError(f"no parquet for subset {name!r} in {str(folder)!r}: looked for {flat.name} and "
                    f"{name}/*.parquet. Subsets found there: {have or 'none'}.")


def decode_image(value, where: str) -> Image.Image:
    """A PIL RGB image from a parquet image cell ({bytes, path}, raw bytes or a path)."""
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
    elif isinstance(value, (bytes, bytearray)):
        data, path = value, None
    else:
        data, path = None, value
    try:
        if data:
            img = Image.open(io.BytesIO(data))
        elif path:
            img = Image.open(path)
        else:
            raise DataError(f"{where}: the image cell is empty. Fix or drop that row.")
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"{where}: the image is missing or corrupt ({type(e).__name__}: {e}). "
                        f"Re-download or regenerate that file.") from e
    return img.convert("RGB")


def load_split(folder: str | os.PathLike, name: str) -> list[dict]:
    """Rows of subset ``name`` with images decoded; each row gets ``images`` (a list) either way."""
    rows = []
    for path in split_path(folder, name):
        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise DataError(f"{path}: not a readable parquet file ({e}). Re-download or regenerate it.") from e
        for i, row in enumerate(table.to_pylist()):
            where = f"{path} row {i} (ID {row.get('ID')})"
            if "images" in row and row["images"] is not None:
                row["images"] = [decode_image(v, f"{where} images[{k}]") for k, v in enumerate(row["images"])]
            elif "image" in row:
                row["images"] = [decode_image(row.pop("image"), where)]
            else:
                raise DataError(f"{where}: no 'image' or 'images' column. Is this an MLLMU-Bench subset?")
            rows.append(row)
    return rows


def generation_items(rows: list[dict], image_index: int | None = 0) -> list[QA]:
    """Generation_Task questions; ``image_index=None`` spreads a Test_Set row's questions over its photos."""
    out = []
    for row in rows:
        for j, item in enumerate(row.get("Generation_Task") or []):
            k = j % len(row["images"]) if image_index is None else min(image_index, len(row["images"]) - 1)
            img = row["images"][k] if item.get("Type", "Image_Textual") != "Pure_Text" else None
            out.append(QA(item["Question"], item["Ground_Truth"], img, str(row["ID"]), item.get("Type", ""),
                          meta={"name": row.get("name")}, attribute=item.get("Attribute")))
    return out


def classification_items(rows: list[dict], which: str = "both") -> list[QA]:
    """A-D questions; ``which`` is 'image', 'text' or 'both'. ``answer`` is the correct letter."""
    keys = {"image": ["Image_Textual_Questions"], "text": ["Pure_Text_Questions"],
            "both": ["Image_Textual_Questions", "Pure_Text_Questions"]}[which]
    out = []
    for row in rows:
        task = row.get("Classification_Task") or {}
        for key in keys:
            for j, item in enumerate(task.get(key) or []):
                img = row["images"][j % len(row["images"])] if key == "Image_Textual_Questions" else None
                opts = {k: str(v) for k, v in item["Options"].items() if v is not None}
                out.append(QA(item["Question"], str(item["Correct_Answer"]).strip(), img, str(row["ID"]),
                              key, options=opts))
    return out


def mask_items(rows: list[dict]) -> list[QA]:
    """Cloze questions (the blank is ``__``); correct when the ground truth appears in the answer."""
    out = []
    for row in rows:
        for item in row.get("Mask_Task") or []:
            img = row["images"][0] if item.get("Type") == "Image_Textual" else None
            out.append(QA(item["Question"], str(item["Ground_Truth"]), img, str(row["ID"]), "cloze",
                          attribute=item.get("Attribute")))
    return out
