"""asru_lens: probe, steer and unlearn Qwen3-VL, after ASRU (arXiv 2605.15687).

    import asru_lens
    lens = asru_lens.load()            # the shipped model organism
    lens = asru_lens.load("Qwen/Qwen3-VL-2B-Instruct", dtype="bfloat16")
"""
from asru_lens.load import Lens, ModelLoadError, load

__version__ = "0.1.0"
__all__ = ["Lens", "ModelLoadError", "load", "__version__"]
