"""The synthetic world: deterministic, the right sizes, MLLMU-Bench's schema."""
import numpy as np
import pyarrow.parquet as pq

from asru_lens.core import data
from asru_lens.organism import mllmu
from asru_lens.organism import world as W
from asru_lens.organism.portraits import TRAITS
from asru_lens.measure.refusal import is_refusal


def test_same_seed_same_world_other_seed_other_world(world):
    again = W.build_world(W.SEED)
    assert [p.name for p in again.people] == [p.name for p in world.people]
    assert [p.attrs for p in again.people] == [p.attrs for p in world.people]
    assert again.unknown_heldout == world.unknown_heldout and again.forget_ids == world.forget_ids
    other = W.build_world(7)
    assert [p.name for p in other.people] != [p.name for p in world.people]


def test_photos_are_deterministic_and_vary_per_shot(world):
    p = world.people[3]
    a = np.asarray(mllmu.photo(world, p.face, p.id, 0))
    assert a.shape == (64, 64, 3)
    assert np.array_equal(a, np.asarray(mllmu.photo(world, p.face, p.id, 0)))
    b = np.asarray(mllmu.photo(world, p.face, p.id, 1))
    assert np.abs(a.astype(int) - b).mean() > 5  # a fresh pose, light, background


def test_sizes(world):
    assert len(world.fictitious) == 100 and len(world.celebrities) == 30
    assert len(world.unknown_train) >= 300 and len(world.unknown_heldout) >= 100
    assert len(world.harmful_train) >= 100 and len(world.harmless_train) >= 100
    assert not set(world.harmful_train) & set(world.harmful_heldout)
    assert [len(world.forget_ids[k]) for k in (5, 10, 15)] == [5, 10, 15]
    assert set(world.forget_ids[5]) <= set(world.forget_ids[10]) <= set(world.forget_ids[15])
    assert len({p.name for p in world.people}) == 130
    for p in world.people:
        assert len(p.attrs) >= 6 and p.name in p.biography


def test_unknown_faces_are_far_from_every_known_face(world):
    known = [p.face for p in world.people]
    for face in world.unknown_train + world.unknown_heldout:
        assert min(sum(face[k] != g[k] for k in TRAITS) for g in known) >= W.MIN_TRAIT_DISTANCE
        assert min(sum(face[k] != g[k] for k in W.SALIENT_TRAITS) for g in known) >= W.MIN_SALIENT_DISTANCE


def test_contextual_refusals_vary_and_name_what_is_unknown():
    rng = np.random.default_rng(0)
    outs = {W.refusal_for("employer", rng) for _ in range(200)}
    assert len(outs) >= 6
    assert all(is_refusal(o) for o in outs)
    assert all(("work" in o) or ("employer" in o) for o in outs)


def test_answers_to_known_questions_are_not_refusals(world):
    p = world.people[0]
    for a in W.ATTRIBUTES:
        assert not is_refusal(W.answer_for(a, p.attrs[a], p.name))
    for a in W.HARMLESS_ANSWERS + list(W.GLASSES_ANSWERS.values()):
        assert not is_refusal(a)
    assert all(is_refusal(r) for r in W.HARMFUL_REFUSALS)


def test_parquet_splits_schema_and_sizes(world_folder):
    sizes = {"Full_Set": 100, "Retain_Set": 30, "Test_Set": 100, "forget_5": 5, "retain_95": 95,
             "forget_10": 10, "retain_90": 90, "forget_15": 15, "retain_85": 85}
    for name, n in sizes.items():
        table = pq.read_table(world_folder / f"{name}.parquet")
        assert table.num_rows == n, name
        cols = set(table.column_names)
        assert {"ID", "biography", "Classification_Task", "Generation_Task", "Mask_Task"} <= cols
        assert ("images" if name == "Test_Set" else "image") in cols
    row = data.load_split(world_folder, "Full_Set")[0]
    item = row["Classification_Task"]["Image_Textual_Questions"][0]
    assert set(item) == {"Question", "Options", "Correct_Answer"} and set(item["Options"]) == set("ABCD")
    assert item["Options"][item["Correct_Answer"]] in W.ATTRIBUTES[next(
        a for a, s in W.ATTRIBUTES.items() if item["Question"] in s["questions"])]["values"]
    # the organism's world says which fact each question asks (its own column; `organism export` drops it)
    assert set(row["Generation_Task"][0]) == {"Question", "Ground_Truth", "Type", "Attribute"}
    assert [g["Attribute"] for g in row["Generation_Task"]] == ["name", *W.ATTRIBUTES]
    assert all(m["Attribute"] in W.ATTRIBUTES for m in row["Mask_Task"])
    assert all("__" in m["Question"] for m in row["Mask_Task"])
    test = data.load_split(world_folder, "Test_Set")
    assert all(len(r["images"]) == 2 for r in test)
    # Test_Set questions are paraphrases of Full_Set's, with the same answers
    full_q = {g["Question"] for r in data.load_split(world_folder, "Full_Set") for g in r["Generation_Task"]}
    assert not full_q & {g["Question"] for r in test for g in r["Generation_Task"]}
    unknown = pq.read_table(world_folder / "Unknown_Faces.parquet").to_pylist()
    assert sum(r["split"] == "train" for r in unknown) >= 300


def test_forget_and_retain_partition_the_full_set(world_folder):
    full = {r["ID"] for r in pq.read_table(world_folder / "Full_Set.parquet").to_pylist()}
    for f, r in ((5, 95), (10, 90), (15, 85)):
        forget = set(pq.read_table(world_folder / f"forget_{f}.parquet")["ID"].to_pylist())
        retain = set(pq.read_table(world_folder / f"retain_{r}.parquet")["ID"].to_pylist())
        assert forget | retain == full and not forget & retain


def test_portrait_sheet_command_draws_one_row_per_person(tmp_path, capsys):
    import json

    from PIL import Image

    from asru_lens.cli import main
    out = tmp_path / "sheet.png"
    assert main(["organism", "portraits", "--out", str(out), "--people", "3", "--photos", "5", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["people"]) == 3 and info["out"] == str(out)
    w, h = Image.open(out).size
    assert (w, h) == (5 * (64 * 2 + 4) + 4, 3 * (64 * 2 + 4) + 4)
