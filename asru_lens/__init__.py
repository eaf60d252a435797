"""asru_lens: probe, steer and unlearn Qwen3-VL, after ASRU (arXiv 2605.15687).

    import asru_lens
    lens = asru_lens.load()            # the shipped model organism
    lens = asru_lens.load("Qwen/Qwen3-VL-2B-Instruct", dtype="bfloat16")
    world = asru_lens.open_world()     # the organism's world; or open_world("/data/MLLMU-Bench",
                                       #   unseen_faces="/data/digiface")
"""
from asru_lens.load import Lens, ModelLoadError, load

__version__ = "0.1.0"
__all__ = ["Lens", "ModelLoadError", "load", "open_world", "__version__"]


def open_world(data=None, *, unseen_faces=None, refusal_prompts=None):
    """The world every command works on (``asru_lens.world.World``), from the provider that fits ``data``:

    * ``None``: the model organism's own world (built into the cache on first use);
    * a folder the organism wrote (``world.json`` + ``Unknown_Faces.parquet``): the organism's world there;
    * any other folder: a plain MLLMU-Bench download (flat or Hub layout).

    ``unseen_faces`` (a folder of face images, flat or ``<id>/0.png``) or ``refusal_prompts`` (a JSONL file)
    give ASRU's refusal set; a plain MLLMU-Bench folder needs one of them for the probe. Files are checked
    here, before any model work."""
    from asru_lens.organism.provider import OrganismWorld, default_world
    from asru_lens.world import World
    if data is None:
        return default_world(unseen_faces, refusal_prompts)
    if OrganismWorld.recognises(data):
        return OrganismWorld(data, unseen_faces, refusal_prompts)
    return World(data, unseen_faces, refusal_prompts)
