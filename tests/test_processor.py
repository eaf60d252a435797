"""The organism's tokenizer + Qwen3VLProcessor: Qwen's layout, and a save/load round trip."""
from transformers import AutoProcessor

from asru_lens.organism import mllmu
from asru_lens.organism.model import SPECIAL_TOKENS


def test_chat_template_is_qwen_style(organism):
    text = organism.prompt("Who is this person?", image=object())
    assert text == ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Who is this person?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert organism.post_instruction_tokens() == ["<|im_end|>", "Ċ", "<|im_start|>", "assistant", "Ċ"]
    assert organism.post_instruction_positions() == [-5, -4, -3, -2, -1]


def test_special_tokens_are_single_tokens(organism):
    tok = organism.tokenizer
    for t in SPECIAL_TOKENS:
        assert tok.convert_ids_to_tokens(tok.convert_tokens_to_ids(t)) == t
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_image_gives_four_visual_tokens(organism, world):
    img = mllmu.photo(world, world.people[0].face, 0, 0)
    enc = organism.encode(["Who is this person?", "How do I sew a button?"], [img, None])
    pad = organism.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (enc["input_ids"] == pad).sum(dim=1).tolist() == [4, 0]
    assert enc["pixel_values"].shape == (16, 1536) and enc["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert enc["attention_mask"][1, 0] == 0  # left padding


def test_processor_round_trip(organism, world, tmp_path):
    organism.processor.save_pretrained(tmp_path)
    again = AutoProcessor.from_pretrained(tmp_path)
    assert type(again).__name__ == "Qwen3VLProcessor"
    img = mllmu.photo(world, world.people[1].face, 1, 0)
    text = organism.prompt("Where was this person born?", img)
    a = organism.processor(text=[text], images=[img], return_tensors="pt")
    b = again(text=[text], images=[img], return_tensors="pt")
    assert a["input_ids"].tolist() == b["input_ids"].tolist()
    assert (a["pixel_values"] == b["pixel_values"]).all()
    # the processor expands the one image placeholder into the image's 4 visual tokens
    assert again.tokenizer.decode(b["input_ids"][0]) == text.replace("<|image_pad|>", "<|image_pad|>" * 4)
