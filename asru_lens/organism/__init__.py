"""The model organism: a tiny real Qwen3-VL trained on a synthetic world of fictitious people.

world.py (people, questions, splits) -> portraits.py (faces) -> mllmu.py (parquet in
MLLMU-Bench's layout) -> model.py (tokenizer, processor, config) -> train.py -> evaluate.py.
"""
