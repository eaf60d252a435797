"""The run's budget (``RunConfig``): what every method reads its own part of, in ``asru-lens run`` and
``asru-lens unlearn`` alike, and the learning-rate grid the run tunes on."""
from __future__ import annotations

from dataclasses import dataclass, field

from asru_lens.methods import registry

LR_GRID = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3)


@dataclass
class RunConfig:
    """The run's budget; every method reads its own part (``steps`` of the baselines, stage 2's, the rewrite's)."""
    forget: int = 10
    n_eval: int = 240                  # questions per set and task (as many as there are, up to this)
    n_val: int = 32
    baseline_steps: int = 40           # forget steps of every loss-based baseline (GA ... MMUnlearner, RMU)
    lr_grid: tuple = LR_GRID
    steer_alphas: tuple = (1.0, 1.5, 2.0)
    grpo_steps: int | None = 80        # stage 2 steps per grid point (the full run: 20 min on 2 cores); None: preset
    seed: int = 0
    methods: tuple = field(default_factory=lambda: registry.names())
    residue: bool = True               # the attacks and probes on every method (asru_lens.measure.residue)
    residue_steps: tuple = (10, 30)    # relearning / benign steps read in the run (asru-lens residue: 10, 30, 100)
    rewrite_steps: int = 300           # the rewrite's cap per grid point (it stops earlier once learnt)

    @classmethod
    def small(cls, **kw) -> "RunConfig":
        """A smaller budget (fewer questions, a two-point grid, no residue) for notebooks and quick looks."""
        return cls(**{"n_eval": 24, "n_val": 16, "baseline_steps": 20, "lr_grid": (1e-4, 3e-3),
                      "steer_alphas": (1.5,), "grpo_steps": 40, "residue": False, "rewrite_steps": 40, **kw})

    @classmethod
    def preset(cls, **kw) -> "RunConfig":
        """``asru-lens unlearn``'s default: the run's budget, but stage 2 at the model's preset steps."""
        return cls(**{"grpo_steps": None, **kw})

    @classmethod
    def named(cls, budget: str, **kw) -> "RunConfig":
        return {"full": cls, "small": cls.small, "preset": cls.preset}[budget](**kw)
