"""CLEAR read as a world (asru_lens.core.clear): a tiny folder in CLEAR's exact Hub schema, written with pyarrow,
every field read; what is missing named at once; a folder that is neither benchmark's named as such."""
import io
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import asru_lens
from asru_lens.core import data
from asru_lens.core.clear import CAPTION_PROMPTS, NAME_QUESTION, ClearWorld
from asru_lens.core.data import DataError

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])      # datasets.Image in parquet


def png(colour) -> dict:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


PEOPLE = {"Ava Stone": "red", "Bo Lind": "green", "Cy Marsh": "blue", "Di Roe": "white"}
FORGET, RETAIN = ("Ava Stone",), ("Bo Lind", "Cy Marsh", "Di Roe")


def person_rows(names, photos=2):
    return [{"image": png(PEOPLE[n]), "caption": f"{n} stands by a {k}-th window in the rain.", "name": n}
            for n in names for k in range(photos)]


def perturbed(rows):
    return [{**r, "paraphrased_caption": r["caption"].replace("stands by", "is next to"),
             "perturbed_captions": [r["caption"].replace("rain", "sun"), r["caption"].replace("rain", "snow")],
             "perturbed_names": [n for n in PEOPLE if n != r["name"]][:3]} for r in rows]


def write(folder, config, rows, schema):
    (folder / config).mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(schema)),
                   folder / config / "train-00000-of-00001.parquet")


PERSON = [("image", IMAGE), ("caption", pa.string()), ("name", pa.string())]
# forget05_perturbed's column order on the Hub differs from forget01_perturbed's: read by name, never position
PERTURBED = [("image", IMAGE), ("caption", pa.string()), ("name", pa.string()), ("paraphrased_caption", pa.string()),
             ("perturbed_names", pa.list_(pa.string())), ("perturbed_captions", pa.list_(pa.string()))]


@pytest.fixture
def clear(tmp_path):
    """forget05, retain95, forget05_perturbed, retain_perturbed, real_faces and real_world in CLEAR's schema."""
    root = tmp_path / "CLEAR"
    write(root, "forget05", person_rows(FORGET), PERSON)
    write(root, "retain95", person_rows(RETAIN), PERSON)
    write(root, "forget05_perturbed", perturbed(person_rows(FORGET)), PERTURBED)
    write(root, "retain_perturbed", perturbed(person_rows(RETAIN[:2], photos=1)), PERTURBED)
    write(root, "real_faces", [{"image": png("black"), "answer": "Ada Lovelace",
                                "options": ["Marie Curie", "Grace Hopper", "Emmy Noether"]}],
          [("image", IMAGE), ("answer", pa.string()), ("options", pa.list_(pa.string()))])
    write(root, "real_world", [{"question": "What colour is the sky here?", "answer": "grey", "image": png("grey"),
                                "options": ["blue", "green", "red"]}],
          [("question", pa.string()), ("answer", pa.string()), ("image", IMAGE), ("options", pa.list_(pa.string()))])
    return root


def test_every_field_of_clears_schema_is_read(clear):
    world = asru_lens.open_world(clear)
    assert isinstance(world, ClearWorld) and world.kind == "clear" and world.forget_splits == (5,)
    rows = world.rows(5)
    assert [r["ID"] for r in rows["forget"]] == ["Ava Stone"] * 2 and {r["ID"] for r in rows["retain"]} == set(RETAIN)
    # a photo's two questions: a caption prompt answered by its caption, the name question by the name
    gen = data.generation_items(rows["forget"])
    assert [q.answer for q in gen] == ["Ava Stone stands by a 0-th window in the rain.", "Ava Stone",
                                       "Ava Stone stands by a 1-th window in the rain.", "Ava Stone"]
    assert gen[0].question in CAPTION_PROMPTS and gen[1].question == NAME_QUESTION and gen[0].image.size == (8, 8)
    assert gen[0].image.getpixel((0, 0)) == (255, 0, 0) and gen[0].attribute is None
    # name A-D from perturbed_names (forget05_perturbed, joined by name and caption), the name at its own letter
    mc = data.classification_items(rows["forget"])
    assert len(mc) == 2 and all(q.options[q.answer] == "Ava Stone" for q in mc)
    assert all(sorted(q.options.values()) == sorted(PEOPLE) for q in mc)
    # retain_perturbed holds two of the three retain people: their rows get A-D, the third's do not
    assert {q.id for q in data.classification_items(rows["retain"])} == {"Bo Lind", "Cy Marsh"}
    # test: the forget people's perturbed rows, asked for the paraphrased caption
    assert [q.answer for q in data.generation_items(rows["test"])][0] == "Ava Stone is next to a 0-th window in the rain."
    # celebrity: real_faces (a real person's name among its options); perception: real_world
    celeb = data.classification_items(rows["celebrity"])
    assert len(celeb) == 1 and celeb[0].options[celeb[0].answer] == "Ada Lovelace" and len(celeb[0].options) == 4
    assert [q.answer for q in world.perception_items()] == ["grey"] and "perception" not in world.missing()
    assert world.split("Full_Set") == rows["forget"] + rows["retain"]                  # no full/: the union
    with pytest.raises(ValueError, match=r"\(clear\) has forget splits 5 \(percent\)"):
        world.rows(10)


def test_a_clear_folder_missing_a_needed_config_is_named_at_once(clear, tmp_path):
    for config, why in (("real_faces", "celebrity set"), ("retain_perturbed", "retain people's name A-D")):
        broken = tmp_path / f"no-{config}"
        shutil.copytree(clear, broken)
        shutil.rmtree(broken / config)
        with pytest.raises(DataError, match=rf"has no {config}/ config: it is needed for the {why}"):
            asru_lens.open_world(broken)
    shutil.rmtree(clear / "real_world")
    assert "no real_world config" in asru_lens.open_world(clear).missing()["perception"]
    elsewhere = tmp_path / "neither"
    write(elsewhere, "something", [{"x": 1}], [("x", pa.int64())])
    with pytest.raises(DataError, match="neither benchmark's layout: looked for MLLMU-Bench's .* and CLEAR's"):
        asru_lens.open_world(elsewhere)


def test_the_organism_exports_its_world_in_clears_schema(world_folder, tmp_path):
    """`organism export --format clear`: CLEAR's configs with CLEAR's columns, read back as the organism's people."""
    from asru_lens.cli import main
    from asru_lens.organism.world import build_world
    out, faces = tmp_path / "clear", tmp_path / "faces"
    assert main(["organism", "export", "--format", "clear", "--out", str(out), "--faces", str(faces), "--json"]) == 0
    columns = {c.name: pq.read_schema(c / "train-00000-of-00001.parquet").names for c in out.iterdir()}
    person, perturbed_cols = ["image", "caption", "name"], {"paraphrased_caption", "perturbed_captions", "perturbed_names"}
    assert set(columns) == {"full", "forget05", "forget10", "retain95", "retain90", "forget05_perturbed",
                            "forget10_perturbed", "retain_perturbed", "real_faces", "real_world"}
    assert all(columns[c] == person for c in ("full", "forget05", "forget10", "retain95", "retain90"))
    assert all(set(columns[c]) == set(person) | perturbed_cols for c in columns if c.endswith("_perturbed"))
    assert columns["real_faces"] == ["image", "answer", "options"]
    assert columns["real_world"] == ["question", "answer", "image", "options"]
    drawn = build_world()
    world = asru_lens.open_world(out, unseen_faces=faces)
    rows = world.rows(10)
    assert {r["ID"] for r in rows["forget"]} == {drawn.people[i].name for i in drawn.forget_ids[10]}
    by_name = {p.name: p for p in drawn.people}
    assert all(r["Generation_Task"][0]["Ground_Truth"] == by_name[r["ID"]].biography for r in rows["forget"])
    mc = data.classification_items(rows["forget"])
    assert len(mc) == len(rows["forget"]) and all(q.options[q.answer] == q.id for q in mc)
    assert {r["ID"] for r in rows["celebrity"]} == {p.name for p in drawn.celebrities}
    assert len(world.perception_items()) == 200 and len(world.faces()) == 200


def test_the_same_knowledge_in_two_formats(organism, clear_export, export):
    """Issue 39: on the organism's forget_10 people, vanilla recognises the name among its perturbed names on the
    CLEAR export (CLEAR's recognition, by likelihood) and answers the MLLMU export's A-D, both >= 0.9. Asked as
    MMUnlearner asks (a letter generated for name A-D), it does not: the organism was never trained on name A-D."""
    from asru_lens.measure.evaluate import cls_right, name_recognition
    clear_world = asru_lens.open_world(clear_export[0], unseen_faces=clear_export[1])
    mllmu_world = asru_lens.open_world(export[0], unseen_faces=export[1])
    names = data.classification_items(clear_world.rows(10)["forget"])
    right, prob = name_recognition(organism, names, clear_world.name_prompt)
    assert len(right) == len(names) == 30 and sum(right) / len(right) >= 0.9
    assert 0.5 < sum(prob) / len(prob) < 1          # CLEAR's Prob.: the right name holds most of the four's mass
    _, generated = cls_right(organism, names, max_new_tokens=24)
    assert sum(generated) / len(generated) < 0.5
    ad = data.classification_items(mllmu_world.rows(10)["forget"])
    _, right = cls_right(organism, ad, max_new_tokens=24)
    assert len(right) >= 30 and sum(right) / len(right) >= 0.9
    assert mllmu_world.name_prompt is None and clear_world.name_prompt == "The name of the person on the image is "


def test_a_forget_split_the_folder_lacks_is_one_error_before_any_model_work(clear, capsys):
    """--forget takes CLEAR's 1 as well as MLLMU's 15; the world says which it holds, before a model loads."""
    from asru_lens.cli import main
    assert main(["evaluate", "--data", str(clear), "--forget", "10", "--json"]) == 2
    err = capsys.readouterr().err
    assert "--forget 10: " in err and "(clear) has forget splits 5 (percent)" in err
    assert "Loading weights" not in err
