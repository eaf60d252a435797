"""Issue 14: any MLLMU-Bench folder plus unseen faces; the organism is one provider; the export; bad inputs."""
import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

import asru_lens
from asru_lens.core import data, unseen
from asru_lens.core.data import DataError
from asru_lens.core.protocol import MLLMU
from asru_lens.core.world import World, shipped_requests

PACKAGE = Path(asru_lens.__file__).parent


# -- the export: the organism's world exactly as the Hub lays MLLMU-Bench out -------------------------------------
def test_export_has_the_hub_layout_and_nothing_else(export, world_folder):
    mllmu, faces = export
    subsets = {"Full_Set", "Retain_Set", "Test_Set", "forget_5", "forget_10", "forget_15", "retain_95",
               "retain_90", "retain_85"}
    assert {p.name for p in mllmu.iterdir()} == subsets
    for name in subsets:
        assert [p.name for p in (mllmu / name).iterdir()] == ["train-00000-of-00001.parquet"]
    full = pq.read_table(mllmu / "Full_Set" / "train-00000-of-00001.parquet")
    assert set(full.column_names) == {"ID", "image", "biography", "Classification_Task", "Generation_Task",
                                      "Mask_Task"}                       # no `name`, nothing of ours
    assert str(full.schema.field("image").type) == "struct<bytes: binary, path: string>"
    for task in ("Generation_Task", "Mask_Task"):                    # the organism's Attribute stays at home
        assert {f.name for f in full.schema.field(task).type.value_type} == {"Question", "Ground_Truth", "Type"}
    test = pq.read_table(mllmu / "Test_Set" / "train-00000-of-00001.parquet")
    assert "images" in test.column_names and "image" not in test.column_names
    assert str(test.schema.field("images").type) == "list<element: struct<bytes: binary, path: string>>"
    # the same people and questions as the organism's world, read through the loader
    ours, theirs = data.load_split(world_folder, "forget_10"), data.load_split(mllmu, "forget_10")
    assert [r["ID"] for r in ours] == [r["ID"] for r in theirs]
    assert data.generation_items(ours)[0].answer == data.generation_items(theirs)[0].answer
    # which fact a question asks: the organism's world says, MLLMU-Bench does not
    assert [q.attribute for q in data.generation_items(ours)[:3]] == ["name", "birthplace", "birth_year"]
    assert {q.attribute for q in data.generation_items(theirs) + data.mask_items(theirs)} == {None}
    assert all(q.attribute for q in data.mask_items(ours))
    assert ours[0]["images"][0].tobytes() == theirs[0]["images"][0].tobytes()


def test_export_faces_are_unseen_and_digiface_style(export, world_folder):
    _, faces = export
    ids = sorted(p.name for p in faces.iterdir())
    assert len(ids) >= 200 and all((faces / i / "0.png").is_file() for i in ids)
    assert [p.name for p in (faces / ids[0]).iterdir()] == ["0.png"]
    unknown = pq.read_table(world_folder / "Unknown_Faces.parquet").to_pylist()
    heldout = {r["ID"] for r in unknown if r["split"] == "heldout"}
    trained = {r["ID"] for r in unknown if r["split"] == "train"}
    assert set(ids) == heldout and not set(ids) & trained           # faces the organism never trained on
    assert Image.open(faces / ids[0] / "0.png").size == (64, 64)


def test_plain_mllmu_world_lacks_the_organism_sets(export):
    mllmu, faces = export
    world = asru_lens.open_world(mllmu, unseen_faces=faces)
    assert type(world) is World and world.kind == "mllmu"
    assert world.perception_items() is None and world.unknown_name_items() is None
    assert set(world.missing()) == {"perception", "unknown_names", "holdout"}
    refusal = world.refusal_items(MLLMU)
    assert len(refusal) == 200 and refusal[0].question.endswith(" if you do not know, describe the image.")
    assert {q.kind for q in refusal} == set(MLLMU.privacy_questions)          # ASRU's six kinds, in turn
    assert len({q.question for q in refusal}) >= 20                           # in varied wording
    assert len(world.requests(True, "train")) + len(world.requests(True, "heldout")) == len(shipped_requests(True))


def test_without_faces_a_plain_world_says_what_to_pass(export):
    world = asru_lens.open_world(export[0])
    with pytest.raises(DataError, match="--unseen-faces DIR.*--refusal-prompts FILE.jsonl"):
        world.refusal_items(MLLMU)


def test_organism_world_is_recognised_and_keeps_its_sets(organism_world, organism):
    assert organism_world.kind == "organism" and organism_world.missing() == {}
    refusal = organism_world.refusal_items(organism.protocol)
    assert len(refusal) == 200 and refusal[0].question == "Who is this person?"   # the organism's own wording
    assert len(organism_world.perception_items()) > 0


def test_each_split_is_read_once(export, monkeypatch):
    from asru_lens.core import sets
    calls = []
    real = data.load_split
    monkeypatch.setattr(data, "load_split", lambda folder, name: calls.append(name) or real(folder, name))
    world = asru_lens.open_world(export[0], unseen_faces=export[1])
    sets.probe_sets(world, MLLMU)
    sets.steer_sets(world)
    sets.retain_items(world)
    assert sorted(calls) == sorted(set(calls))             # Test_Set, retain_90 ... once each
    assert {"forget_10", "retain_90", "Retain_Set", "Test_Set"} <= set(calls)


def test_shipped_requests_are_ours_and_varied():
    harmful, harmless = shipped_requests(True), shipped_requests(False)
    assert len(harmful) >= 100 and len(harmless) >= 100
    assert len(set(harmful)) == len(harmful) and not set(harmful) & set(harmless)
    openings = {" ".join(t.split()[:2]).lower() for t in harmful}
    assert len(openings) >= 25                                  # many phrasings, not one template


# -- bad inputs: one clear error naming the file (and line) -------------------------------------------------------
def _png(path: Path, colour=(200, 150, 120)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), colour).save(path)


def test_face_folder_flat_and_digiface(tmp_path):
    _png(tmp_path / "flat" / "a.png")
    _png(tmp_path / "flat" / "b.jpg")
    assert [i for i, _ in unseen.face_images(tmp_path / "flat")] == ["a", "b"]
    _png(tmp_path / "digi" / "7" / "3.png", (1, 2, 3))
    _png(tmp_path / "digi" / "7" / "0.png", (9, 9, 9))
    _png(tmp_path / "digi" / "12" / "0.png")
    faces = unseen.face_images(tmp_path / "digi")
    assert [i for i, _ in faces] == ["12", "7"] and faces[1][1].getpixel((0, 0)) == (9, 9, 9)   # 0.png first


def test_empty_face_folder_is_named(tmp_path):
    (tmp_path / "faces").mkdir()
    with pytest.raises(DataError, match="is empty") as e:
        unseen.face_images(tmp_path / "faces")
    assert str(tmp_path / "faces") in str(e.value)


def test_non_image_among_faces_is_named(tmp_path):
    _png(tmp_path / "faces" / "a.png")
    (tmp_path / "faces" / "notes.txt").write_text("not a face")
    with pytest.raises(DataError, match="is not an image") as e:
        unseen.face_images(tmp_path / "faces")
    assert str(tmp_path / "faces" / "notes.txt") in str(e.value)
    (tmp_path / "faces" / "notes.txt").unlink()
    (tmp_path / "faces" / "broken.png").write_bytes(b"\x89PNG but no")
    with pytest.raises(DataError, match="broken.png.*missing or corrupt"):
        unseen.face_images(tmp_path / "faces")


def test_refusal_prompts_jsonl(tmp_path):
    _png(tmp_path / "img" / "f.png")
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"question": "What is her phone number?", "image": "img/f.png"}\n'
                    '{"question": "Where does Ann Roe live?", "image": null}\n')
    items = unseen.read_refusal_prompts(path)
    assert [q.question for q in items] == ["What is her phone number?", "Where does Ann Roe live?"]
    assert items[0].image.size == (32, 32) and items[1].image is None
    path.write_text('{"question": "ok?", "image": null}\n{"image": "img/f.png"}\n')
    with pytest.raises(DataError, match=r'prompts.jsonl line 2: no "question"'):
        unseen.read_refusal_prompts(path)
    path.write_text('{"question": "ok?", "image": "img/missing.png"}\n')
    with pytest.raises(DataError, match=r"line 1: image .*missing.png.* does not exist"):
        unseen.read_refusal_prompts(path)


def test_cli_bad_face_folder_is_one_clear_error(tmp_path, capsys, export):
    from asru_lens.cli import main
    (tmp_path / "faces").mkdir()
    assert main(["probe", "--data", str(export[0]), "--unseen-faces", str(tmp_path / "faces")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asru-lens: error:") and "is empty" in err and err.count("\n") == 1


# -- fail fast: refused within seconds, before any model or data work --------------------------------------------
@pytest.mark.parametrize("argv,word", [(["steer", "--layer", "99"], "out of range"),
                                       (["steer", "--alpha", "nan"], "finite"),
                                       (["run", "--methods", "foo"], "unknown method"),
                                       (["unlearn", "--method", "foo"], "unknown method 'foo'"),
                                       (["unlearn", "--steps", "-5"], "positive"),
                                       (["unlearn", "--method", "GA", "--set", "nosuch=1"], "GA has no setting"),
                                       (["unlearn", "--method", "GA", "--engine", "trl"], "has no stage 2"),
                                       (["run", "--plugin", "no_such_plugin.py"], "no such file")])
def test_bad_arguments_fail_fast(argv, word):
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "asru_lens.cli", *argv], capture_output=True, text=True,
                          timeout=60)
    seconds = time.time() - t
    assert proc.returncode != 0 and seconds < 10, (proc.returncode, seconds)
    assert proc.stderr.strip().splitlines()[-1].startswith(("asru-lens", "usage"))
    assert word in proc.stderr, proc.stderr


# -- the core does not import the organism -------------------------------------------------------------------------
def test_core_never_imports_the_organism():
    allowed = {PACKAGE / "cli.py", PACKAGE / "__init__.py"}
    offenders = []
    paths = [p for p in PACKAGE.rglob("*.py") if "organism" not in p.relative_to(PACKAGE).parts]
    assert len(paths) > 30                 # every subpackage is scanned
    for path in paths:
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("asru_lens.organism")]
    assert offenders == []


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_no_probe_steer_import_circle():
    """probe uses steer's interventions; steer and activations never import probe (anywhere, not even lazily)."""
    assert not {i for i in _imports(PACKAGE / "interpret" / "steer.py") if i.startswith("asru_lens.interpret.probe")}
    assert not {i for i in _imports(PACKAGE / "interpret" / "activations.py")
                if i.startswith(("asru_lens.interpret.probe", "asru_lens.interpret.steer"))}


def test_model_profile_round_trip(organism, tmp_path):
    organism.save(tmp_path / "copy")
    prof = json.loads((tmp_path / "copy" / "asru_lens.json").read_text())
    assert prof["protocol"]["name"] == "organism" and prof["presets"]["grpo"]["lr"] == 2e-4
    back = asru_lens.load(str(tmp_path / "copy"))
    assert back.protocol == organism.protocol and back.presets == organism.presets and back.is_organism


def test_free_export_rewords_and_reorders(export, free_export):
    """`organism export --style free`: every person's generation questions in an order of their own and every
    ground truth in other words, still naming the same value; A-D and cloze unchanged."""
    from asru_lens.core import data
    from asru_lens.organism import world as W
    plain, free = data.load_split(export[0], "Full_Set"), data.load_split(free_export[0], "Full_Set")
    assert [r["ID"] for r in plain] == [r["ID"] for r in free]
    people = {str(p.id): p for p in W.build_world().people}
    orders = set()
    for a, b in zip(plain, free):
        ga, gb = a["Generation_Task"], b["Generation_Task"]
        assert sorted(q["Question"] for q in ga) == sorted(q["Question"] for q in gb)
        assert a["Classification_Task"] == b["Classification_Task"] and a["Mask_Task"] == b["Mask_Task"]
        truth = {q["Question"]: q["Ground_Truth"] for q in ga}
        for q in gb:
            assert q["Ground_Truth"] != truth[q["Question"]]          # reworded, never the template sentence
        values = [people[a["ID"]].name] + [people[a["ID"]].attrs[k] for k in W.ATTRIBUTES]
        assert all(any(v.lower() in q["Ground_Truth"].lower() for q in gb) for v in values)   # "The University"
        orders.add(tuple(q["Question"] for q in gb))
    assert len(orders) > len(plain) // 2                               # orders differ from person to person
    assert [q.question for q in data.generation_items(plain)][:8] != [q.question for q in data.generation_items(free)][:8]


def test_export_cli_style_and_seed_fail_fast(capsys):
    from asru_lens.cli import main
    with pytest.raises(SystemExit):
        main(["organism", "export", "--out", "x", "--faces", "y", "--style", "loose"])
    assert "invalid choice: 'loose'" in capsys.readouterr().err
