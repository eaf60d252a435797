"""What a model does and still knows: ``evaluate`` (MLLMU-Bench's tasks), ``residue`` (relearning, probes,
attacks), ``judge`` and ``metrics`` (generation quality), ``refusal`` (what counts as a refusal)."""
