"""ASRU's refusal set from your own files: privacy questions about faces the model has never seen.

Two sources, checked before any model work:

* a folder of face images, flat (``faces/*.png``) or DigiFace-1M style (``faces/<identity>/0.png``: the first
  image of each identity folder is that face). Each face gets one privacy question in the model's protocol
  (``Protocol.privacy``: ASRU's six kinds, in turn, in varied wording);
* a JSONL file of your own prompts, one ``{"question": ..., "image": "path/or/null"}`` per line (image paths
  relative to the file).

The probe then keeps only the prompts the model itself refuses (ASRU does the same), and says how many.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from asru_lens.core.data import QA, DataError, decode_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def face_images(folder: str | os.PathLike) -> list[tuple[str, object]]:
    """(face id, PIL image) for every face in ``folder``: its image files, or the first image of each
    sub-folder (one identity each). Every file is decoded here, so a bad one is named before model work."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"unseen-faces folder {str(folder)!r} does not exist or is not a folder. Pass a folder of "
                        f"face images (faces/*.png) or of identity folders (faces/<id>/0.png, as DigiFace-1M).")
    entries = sorted(p for p in folder.iterdir() if _visible(p))
    files = [p for p in entries if p.is_file()]
    dirs = [p for p in entries if p.is_dir()]
    faces = [(p.stem, p) for p in files]
    for d in dirs:  # DigiFace-1M: one folder per identity; 0.png (the first file) is the face ASRU uses
        inside = sorted((p for p in d.iterdir() if p.is_file() and _visible(p)),
                        key=lambda p: (p.stem != "0", p.name))
        if not inside:
            raise DataError(f"identity folder {str(d)!r} in the unseen faces holds no image. Remove it or add its "
                            f"photos (e.g. {d.name}/0.png).")
        faces.append((d.name, inside[0]))
    if not faces:
        raise DataError(f"unseen-faces folder {str(folder)!r} is empty: it needs face images (faces/*.png) or "
                        f"identity folders (faces/<id>/0.png). ASRU uses 400 DigiFace-1M faces.")
    out = []
    for face_id, path in faces:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"{path} is not an image ({path.suffix or 'no suffix'}; expected "
                            f"{', '.join(IMAGE_SUFFIXES)}). The unseen-faces folder must hold only face images; "
                            f"move that file out.")
        out.append((face_id, decode_image(str(path), f"unseen face {path}")))
    return out


def read_refusal_prompts(path: str | os.PathLike) -> list[QA]:
    """Refusal prompts from a JSONL file: ``{"question": str, "image": path or null}`` per line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"refusal-prompts file {str(path)!r} does not exist. Pass a JSONL file with one "
                        f'{{"question": "...", "image": "face.png"}} per line.')
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {i}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg}). Each line must be one JSON object.") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("question"), str) or not rec["question"].strip():
            raise DataError(f'{where}: no "question" (a non-empty string). Each line needs '
                            f'{{"question": "...", "image": "path or null"}}.')
        image = rec.get("image")
        if image is not None:
            img_path = Path(image) if Path(image).is_absolute() else path.parent / image
            if not img_path.is_file():
                raise DataError(f"{where}: image {str(img_path)!r} does not exist. Paths are relative to the "
                                f"JSONL file's folder.")
            image = decode_image(str(img_path), f"{where}: image {str(img_path)!r}")
        out.append(QA(rec["question"].strip(), "", image, str(rec.get("id", i)), str(rec.get("kind", "prompt"))))
    if not out:
        raise DataError(f"refusal-prompts file {str(path)!r} holds no prompts. Add one JSON object per line.")
    return out


def privacy_items(faces: list[tuple[str, object]], protocol) -> list[QA]:
    """One privacy question per face, in the protocol's wording (``Protocol.privacy``)."""
    out = []
    for j, (face_id, image) in enumerate(faces):
        kind, question = protocol.privacy(j)
        out.append(QA(question, "", image, face_id, kind))
    return out
