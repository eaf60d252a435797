"""asru_lens.core.data reads a real MLLMU-Bench folder layout and fails clearly on bad input."""
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from asru_lens.core import data


def _png(colour):
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, format="PNG")
    return buf.getvalue()


def _row(i, test=False):
    mc = {"Question": "What is the occupation of the person in the image?",
          "Options": {"A": "Doctor", "B": "Chef", "C": "Pilot", "D": "Nurse"}, "Correct_Answer": "C"}
    row = {"ID": i, "biography": f"Person {i} is a pilot.",
           "Classification_Task": {"Image_Textual_Questions": [mc], "Pure_Text_Questions": [mc, mc]},
           "Generation_Task": [{"Question": "What does this person do?", "Ground_Truth": "A pilot.",
                                "Type": "Image_Textual"}],
           "Mask_Task": [{"Question": "This person works as a __.", "Ground_Truth": "pilot",
                          "Type": "Image_Textual"}]}
    if test:
        row["images"] = [{"bytes": _png("red"), "path": f"{i}_a.png"}, {"bytes": _png("blue"), "path": None}]
    else:
        row["image"] = {"bytes": _png("green"), "path": f"{i}.png"}
    return row


@pytest.fixture
def hub_layout(tmp_path):
    """The layout of the Hub download: one folder per subset, train-*.parquet inside (no `name` column)."""
    for name, test in (("Full_Set", False), ("Test_Set", True)):
        (tmp_path / name).mkdir()
        pq.write_table(pa.Table.from_pylist([_row(i, test) for i in range(3)]),
                       tmp_path / name / "train-00000-of-00001.parquet")
    return tmp_path


def test_reads_the_real_mllmu_layout(hub_layout):
    full = data.load_split(hub_layout, "Full_Set")
    assert len(full) == 3 and full[0]["images"][0].size == (40, 30)
    assert full[0]["images"][0].getpixel((0, 0)) == (0, 128, 0)
    cls = data.classification_items(full)
    assert len(cls) == 9 and cls[0].answer == "C" and cls[0].options["C"] == "Pilot"
    assert cls[0].image is not None and cls[1].image is None  # pure-text questions carry no image
    gen = data.generation_items(full)
    assert [(g.question, g.answer) for g in gen][:1] == [("What does this person do?", "A pilot.")]
    assert data.mask_items(full)[0].answer == "pilot"
    test = data.load_split(hub_layout, "Test_Set")
    assert [im.getpixel((0, 0)) for im in test[0]["images"]] == [(255, 0, 0), (0, 0, 255)]


def test_reads_our_flat_layout(world_folder):
    rows = data.load_split(world_folder, "forget_5")
    assert len(rows) == 5 and rows[0]["images"][0].size == (64, 64)
    gen = data.generation_items(rows)
    assert len(gen) == 5 * 8 and gen[0].answer.startswith("This is ")


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(data.DataError, match="does not exist") as e:
        data.load_split(tmp_path / "nope", "Full_Set")
    assert str(tmp_path / "nope") in str(e.value)


def test_missing_subset_lists_what_is_there(hub_layout):
    with pytest.raises(data.DataError, match=r"forget_10.*Full_Set"):
        data.load_split(hub_layout, "forget_10")


def test_corrupt_image_names_file_and_row(tmp_path):
    row = _row(7)
    row["image"] = {"bytes": b"\x89PNG not really", "path": None}
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "Full_Set.parquet")
    with pytest.raises(data.DataError, match=r"Full_Set.parquet row 0 \(ID 7\).*corrupt"):
        data.load_split(tmp_path, "Full_Set")


def test_missing_image_file_is_named(tmp_path):
    row = _row(1)
    row["image"] = {"bytes": None, "path": str(tmp_path / "gone.png")}
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "Full_Set.parquet")
    with pytest.raises(data.DataError, match="missing or corrupt"):
        data.load_split(tmp_path, "Full_Set")


def test_not_a_parquet_file(tmp_path):
    (tmp_path / "Full_Set.parquet").write_bytes(b"garbage")
    with pytest.raises(data.DataError, match="not a readable parquet"):
        data.load_split(tmp_path, "Full_Set")
