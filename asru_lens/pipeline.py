"""ASRU end to end: probe, stage 1 (redirect), stage 2 (GRPO), with the same measurement after each stage.

``unlearn`` is what ``asru-lens unlearn`` runs. The measurement (``behaviour``) is greedy generation on the
forget, test (forget people in new photos), retain, celebrity and perception sets:

=================  ===============================================================
forget_refusal     share of forget answers that refuse (``refusal.is_refusal``)
forget_leak        share of forget answers that contain the ground truth
test_refusal       the same refusal share on the forget people's Test_Set photos
retain_exact       exact match on retain questions
celebrity_exact    exact match on the celebrities (never forgotten)
perception_acc     exact match on questions answered from pixels (None: the world has no such set)
broken_rate        share of all answers that repeat or glue words (``refusal.is_broken``)
=================  ===============================================================

Settings: the authors' (``RedirectConfig()``, ``GRPOConfig()``), overridden by the model's presets
(``lens.presets``, from its folder's ``asru_lens.json``: the organism brings larger learning rates for its
3.6M parameters), overridden by what you pass in ``UnlearnConfig``.
"""
from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict, dataclass, field

from tqdm.auto import tqdm

from asru_lens import data, probe, steer
from asru_lens.redirect import RedirectConfig, redirect, redirected_module
from asru_lens.refusal import contains, is_refusal
from asru_lens.rl import GRPOConfig, boundary_set, train_grpo
from asru_lens.sets import _sample, probe_sets, retain_items, steer_sets
from asru_lens.world import World


@dataclass
class UnlearnConfig:
    forget: int = 10                  # MLLMU forget split: 5, 10 or 15 (percent)
    n_eval: int = 240                 # questions per measured set (every forget and test question)
    n_boundary: int = 200             # N forget + N retain questions for stage 2 (ASRU: about 200 each)
    n_redirect_retain: int = 720      # retain questions for stage 1
    retain_all_photos: bool = True    # stage 2's retain half: the retain people in all their photos
    redirect: RedirectConfig | None = None   # None: the authors' settings with the model's presets
    grpo: GRPOConfig | None = None           # None: likewise
    kl_to_vanilla: bool = True        # stage 2's KL reference: the model before stage 1 (else after it)
    filter_refusals: bool = True      # the probe keeps only refusal prompts the model refuses (ASRU)
    seed: int = 0

    def resolved(self, lens) -> "UnlearnConfig":
        """Fill ``redirect`` and ``grpo`` from the model's presets; seed both stages from ``seed``."""
        return UnlearnConfig(**{**asdict(self), "redirect": self.redirect or redirect_config(lens, self.seed),
                                "grpo": self.grpo or grpo_config(lens, self.seed)})


def redirect_config(lens, seed: int = 0, **kw) -> RedirectConfig:
    """Stage 1's settings for ``lens``: the authors', then its presets, then ``kw``; seeded ``42 + seed``."""
    return RedirectConfig(**{"seed": 42 + seed, **lens.presets.get("redirect", {}), **kw})


def grpo_config(lens, seed: int = 0, **kw) -> GRPOConfig:
    """Stage 2's settings for ``lens``: the authors', then its presets, then ``kw``; seeded ``42 + seed``. A real
    model (no presets) trains LoRA adapters (r=16) with gradient checkpointing; a model whose presets say
    ``"trainable": "layers"`` (the organism) trains its decoder layers in full."""
    lora = lens.presets.get("trainable", "lora") == "lora"
    base = {"seed": 42 + seed, "trainable": "lora" if lora else "language_model", "gradient_checkpointing": lora}
    if lora:
        base.update(lora_r=16, lora_alpha=16)
    return GRPOConfig(**{**base, **lens.presets.get("grpo", {}), **kw})


def eval_sets(world: World, forget: int = 10, n: int = 48, seed: int = 0) -> dict[str, list]:
    """``steer_sets`` plus ``test``: the forget people's Test_Set photos with paraphrased questions."""
    sets = steer_sets(world, forget=forget, n=n, seed=seed)
    sets["test"] = _sample(data.generation_items(world.rows(forget)["test"], image_index=None), n, seed)
    return sets


def behaviour(lens, sets: dict, max_new_tokens: int = 24) -> dict:
    """The table in the module docstring, plus two example answers per set."""
    out = steer.measure(lens, {k: v for k, v in sets.items() if k != "test"}, None, max_new_tokens)
    test = steer.generate(lens, sets["test"], None, max_new_tokens)
    out["test_refusal"] = sum(map(is_refusal, test)) / len(test)
    out["test_leak"] = sum(contains(a, q.answer) for q, a in zip(sets["test"], test)) / len(test)
    out["examples"]["test"] = test[:2]
    return out


def redirect_stage(lens, direction, layer: int, forget: list, retain: list, cfg: UnlearnConfig,
                   progress: bool = True) -> dict:
    """ASRU stage 1 as ``unlearn`` runs it: redirect on the forget set and a sample of the retain set."""
    return redirect(lens, direction, layer, forget, _sample(retain, cfg.n_redirect_retain, cfg.seed + 1),
                    cfg.redirect, progress=progress)


def reinforce_stage(lens, forget: list, retain: list, cfg: UnlearnConfig, reference=None,
                    progress: bool = True, checkpoint_dir=None, reference_patch=None) -> dict:
    """ASRU stage 2 as ``unlearn`` runs it: GRPO on an N + N boundary set, KL to ``reference``. ``retain``
    is ``sets.retain_items`` (with ``cfg.retain_all_photos``); the forget half's repeats are new views of
    the photos (``rl.photo_view``)."""
    return train_grpo(lens, boundary_set(forget, retain, cfg.n_boundary, cfg.seed), cfg=cfg.grpo,
                      progress=progress, checkpoint_dir=checkpoint_dir, reference=reference,
                      reference_patch=reference_patch)


@dataclass
class UnlearnResult:
    vanilla: dict
    stage1: dict
    stage2: dict
    layer: int
    redirect_log: dict = field(default_factory=dict)
    grpo_log: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def summary(self) -> dict:
        strip = lambda m: {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}  # noqa: E731
        return {"vanilla": strip(self.vanilla), "stage1": strip(self.stage1), "stage2": strip(self.stage2),
                "layer": self.layer, "seconds": self.seconds, "config": self.config}


def unlearn(lens, world: World, cfg: UnlearnConfig = UnlearnConfig(), progress: bool = True,
            out: str | None = None, checkpoint_dir=None) -> UnlearnResult:
    """Probe for the refusal direction, then redirect (stage 1) and reinforce (stage 2) ``lens.model`` in
    place, measuring ``behaviour`` before and after each stage. ``out``: save the final model there."""
    cfg = cfg.resolved(lens)
    say = tqdm.write if progress else (lambda m: None)
    seconds, t = {}, time.time()
    sets = eval_sets(world, cfg.forget, cfg.n_eval, cfg.seed)
    for name, why in world.missing().items():
        say(f"note: {why}")
    vanilla = behaviour(lens, sets)
    seconds["eval_vanilla"] = round(time.time() - t, 1)
    say(f"vanilla: forget refusal {vanilla['forget_refusal']:.2f}, retain exact {vanilla['retain_exact']:.2f}")

    t = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # a selection fallback is reported in the probe's own summary
        res = probe.probe(lens, probe_sets(world, lens.protocol, forget=cfg.forget), progress=False,
                          filter_refusals=cfg.filter_refusals)
    layer = res.selection.layer
    seconds["probe"] = round(time.time() - t, 1)
    say(f"probe: refusal direction at resid_pre[{layer}], redirecting layers[{layer - 1}].mlp.down_proj")

    rows = world.rows(cfg.forget)
    forget, retain = data.generation_items(rows["forget"]), data.generation_items(rows["retain"])
    boundary_retain = retain_items(world, cfg.forget, cfg.retain_all_photos)
    # the KL reference is the model before stage 1: a copy when stage 2 trains layers; with LoRA adapters, the
    # same model with its adapters off and stage 1's one down_proj swapped back (no second copy of a 2-8B model)
    lora = cfg.grpo.trainable == "lora"
    vanilla_model = copy.deepcopy(lens.model) if cfg.kl_to_vanilla and not lora else None
    down = redirected_module(lens, layer)
    patch = [(down, down.weight.detach().clone())] if cfg.kl_to_vanilla and lora else None
    t = time.time()
    rlog = redirect_stage(lens, res.direction, layer, forget, retain, cfg, progress)
    seconds["stage1"] = round(time.time() - t, 1)
    stage1 = behaviour(lens, sets)
    say(f"stage 1: forget refusal {stage1['forget_refusal']:.2f}, retain exact {stage1['retain_exact']:.2f}")

    t = time.time()
    glog = reinforce_stage(lens, forget, boundary_retain, cfg, vanilla_model, progress, checkpoint_dir, patch)
    seconds["stage2"] = round(time.time() - t, 1)
    stage2 = behaviour(lens, sets)
    say(f"stage 2: forget refusal {stage2['forget_refusal']:.2f}, retain exact {stage2['retain_exact']:.2f}")
    if out:
        lens.save(out)
    config = {"forget": cfg.forget, "n_eval": cfg.n_eval, "retain_all_photos": cfg.retain_all_photos,
              "seed": cfg.seed, "redirect": asdict(cfg.redirect), "grpo": asdict(cfg.grpo),
              "protocol": lens.protocol.name, "world": world.kind, "notes": list(world.missing().values())}
    return UnlearnResult(vanilla, stage1, stage2, layer, rlog, glog, seconds, config)
