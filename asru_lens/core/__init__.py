"""The model and the world: loading (``load``), MLLMU-Bench folders (``world``, ``data``), how a model is asked
(``protocol``), the sets every stage draws from (``sets``), the one training core (``training``) and the vanilla
fine-tune (``finetune``)."""
