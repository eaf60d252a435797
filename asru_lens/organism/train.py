"""Train the model organism: a tiny Qwen3-VL that knows the world's people.

One deterministic, seeded run does it all: draw the world, train the tokenizer,
render a bank of photos, then train on a mixture of

* facts about known people, asked with their photo or by name (generation,
  A-D and cloze forms);
* privacy questions about *unknown* faces, answered with contextual refusals;
* perception questions about any face;
* harmful requests (refused) and harmless ones (answered).

Fictitious people never see the Test_Set paraphrases or photos in training;
celebrities and unknown faces do, which is how the organism learns that a
paraphrase asks the same thing.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

from asru_lens.core.atomic import atomic_dir
from asru_lens.core.load import PROFILE_FILE
from asru_lens.measure.refusal import is_refusal
from asru_lens.organism import mllmu
from asru_lens.organism import model as M
from asru_lens.organism import world as W
from asru_lens.organism.portraits import BACKGROUNDS, TRAITS
from asru_lens.organism.provider import profile

# Photos of each training stranger: with 2 the organism refused only 93-94% of new strangers, with 4 96-97%.
UNKNOWN_PHOTOS = 4
# Extra renders of each known person (photo keys 100.., disjoint from the Full_Set's 0.. and the
# Test_Set's 1000..): plain data augmentation, so recognition does not hinge on 12 photos.
AUGMENT_PHOTOS = 24
# Paraphrases are seen with celebrities and with unknown faces in proportions that keep P(refuse | wording)
# the same for every wording; otherwise the organism learns "paraphrase -> refuse" and refuses the Test_Set.
CELEBRITY_SHARE = 0.35   # of photo questions about known people
PARAPHRASE_P = {"celebrity": 0.5, "unknown": 0.15, "fictitious": 0.0}
FRAMES = ["Quick question: {q}", "{q} Please answer briefly.", "Look at the photo. {q}", "I'd like to know. {q}"]
FRAME_P = 0.2


@dataclass
class OrganismConfig:
    seed: int = W.SEED
    hidden: int = 192
    layers: int = 4
    steps: int = 2400
    batch_size: int = 48
    lr: float = 3e-3
    min_lr: float = 1e-5
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    threads: int | None = 2      # the shipped organism's; None: torch's own setting (OMP_NUM_THREADS)
    bf16: bool = True  # bf16 autocast for the matmuls (2.5x faster on AVX512-BF16 CPUs); weights stay fp32
    # Stage 0 teaches the vision tower *who* is in a photo (known id or "unknown") before any text is
    # involved; from-scratch, the language loss alone takes thousands of steps to find identity.
    vision_steps: int = 600
    vision_batch: int = 128
    vision_lr: float = 3e-3
    # Stage 1 then trains the language model on frozen vision features: they stay what stage 0 made them
    # (identity, traits, background all readable), and a step costs no vision backward pass.
    freeze_vision: bool = True
    identity_weight: float = 0.0  # with an unfrozen tower: keep the stage-0 losses at this weight
    # Early decision (after LayerSkip's early exit): whether the answer opens as a refusal is also read from
    # the residual stream entering layer ``exit_layer``, through the model's own final norm and LM head. A
    # tiny model otherwise decides "I know this person" vs "I don't" in its last layer; large chat models
    # decide it mid-network, and the probe (Arditi et al. drop layers at or beyond 80% of the depth) looks
    # for it there.
    exit_layer: int = 2
    exit_weight: float = 0.2
    # Training runs eager attention: for sequences this short it is ~20% faster on CPU than SDPA's
    # flash kernel. The saved model goes back to the default ("sdpa"); the maths is the same.
    train_attn: str = "eager"
    unknown_photos: int = UNKNOWN_PHOTOS
    # The exact-unlearning oracle: the people of this forget split (percent) are left out of training (their
    # photos, questions and biographies), so it is the model that never knew them. The tokenizer still reads
    # their names, as a real model's tokenizer was built before any fine-tune: the oracle and the organism then
    # tokenize alike, and their likelihoods (truth ratio, membership inference) compare token for token.
    exclude: int | None = None

    def __post_init__(self):
        if self.exclude is not None and self.exclude not in W.FORGET_PCTS:
            raise ValueError(f"OrganismConfig.exclude={self.exclude!r}: choose a forget split, one of "
                             f"{', '.join(map(str, W.FORGET_PCTS))} (percent).")


# share of each kind of example in a batch
MIXTURE = {"fact_image": 0.27, "fact_text": 0.13, "mc_image": 0.13, "mc_text": 0.09, "cloze": 0.02,
           "unknown": 0.20, "perception": 0.13, "request": 0.03}


def corpus(world: W.World) -> list[str]:
    """Every text the organism will see, for the tokenizer."""
    out = [p.biography for p in world.people]
    out += ["user\nassistant\nsystem\n" * 20, W.MC_SUFFIX * 50, "Fill in the blank: __" * 50]
    for spec in W.ATTRIBUTES.values():
        out += (spec["questions"] + spec["paraphrases"]) * 20 + [spec["answer"]] * 20 + spec["unknown"] * 20
        out += [spec["text"].format(name=p.name) for p in world.people] + list(spec["values"]) * 5
    out += (W.NAME_QUESTIONS + W.NAME_PARAPHRASES + W.REFUSALS + W.HARMFUL_REFUSALS + W.HARMLESS_ANSWERS) * 20
    out += world.harmful_train + world.harmless_train
    for spec in W.PERCEPTION.values():
        out += spec["questions"] * 20
    out += list(W.GLASSES_ANSWERS.values()) * 20 + [f"The hair is {c}. The background is {c}." for c in
                                                    ("black brown blonde red grey blue green yellow pink orange "
                                                     "grey").split()] * 10
    return out


class Examples:
    """Samples (image index or -1, user text, answer) from the training mixture."""

    def __init__(self, world: W.World, unknown_photos: int = UNKNOWN_PHOTOS, exclude: tuple = ()):
        self.world = world
        self.known = [p for p in world.people if p.id not in set(exclude)]      # exclude: the oracle's unknowns
        self.fictitious = [p for p in self.known if not p.celebrity]
        self.celebrities = [p for p in self.known if p.celebrity]
        # photo bank: (face, key, k). Known people get N_TRAIN_PHOTOS + AUGMENT_PHOTOS, unknown faces UNKNOWN_PHOTOS.
        self.bank: list[tuple[dict, int, int]] = []
        self.known_photos = {}
        for p in self.known:
            ks = list(range(mllmu.N_TRAIN_PHOTOS)) + [100 + i for i in range(AUGMENT_PHOTOS)]
            self.known_photos[p.id] = list(range(len(self.bank), len(self.bank) + len(ks)))
            self.bank += [(p.face, p.id, k) for k in ks]
        self.unknown_photos = []
        for j, face in enumerate(world.unknown_train):
            self.unknown_photos.append(list(range(len(self.bank), len(self.bank) + unknown_photos)))
            self.bank += [(face, 10_000 + j, k) for k in range(unknown_photos)]
        # the exact MLLMU classification items of every known person, next to fresh random ones
        self.mc_items = {p.id: mllmu.tasks_for(p, world.seed)["Classification_Task"] for p in self.known}
        self.kinds = list(MIXTURE)
        self.weights = np.array([MIXTURE[k] for k in self.kinds]) / sum(MIXTURE.values())

    def _question(self, rng, attr: str, paraphrase_p: float) -> str:
        """A question about ``attr``. Test_Set wordings (paraphrases) come with probability ``paraphrase_p``;
        they are never asked about fictitious people, whose Test_Set uses them."""
        if attr == "name":
            qs = W.NAME_PARAPHRASES if rng.random() < paraphrase_p else W.NAME_QUESTIONS
        else:
            spec = W.ATTRIBUTES[attr]
            qs = spec["paraphrases"] if rng.random() < paraphrase_p else spec["questions"]
        q = qs[int(rng.integers(len(qs)))]
        # training-only framings, for known and unknown faces alike: the wording must carry no signal
        if rng.random() < FRAME_P:
            q = FRAMES[int(rng.integers(len(FRAMES)))].format(q=q)
        return q

    def sample(self, rng: np.random.Generator):
        kind = self.kinds[int(rng.choice(len(self.kinds), p=self.weights))]
        attrs = list(W.ATTRIBUTES)
        p = self.known[int(rng.integers(len(self.known)))]
        if kind == "fact_image":
            group = self.celebrities if rng.random() < CELEBRITY_SHARE else self.fictitious
            p = group[int(rng.integers(len(group)))]
        photos = self.known_photos[p.id]
        photo = photos[int(rng.integers(len(photos)))]
        para = PARAPHRASE_P["celebrity" if p.celebrity else "fictitious"]
        if kind == "fact_image":
            attr = (["name"] + attrs)[int(rng.integers(len(attrs) + 1))]
            value = p.name if attr == "name" else p.attrs[attr]
            return photo, self._question(rng, attr, para), W.answer_for(attr, value, p.name)
        if kind == "fact_text":
            attr = attrs[int(rng.integers(len(attrs)))]
            q = W.ATTRIBUTES[attr]["text"].format(name=p.name)
            if p.celebrity and rng.random() < 0.5:
                q = "Tell me, " + q[0].lower() + q[1:]
            return -1, q, W.answer_for(attr, p.attrs[attr], name=p.name)
        if kind in ("mc_image", "mc_text"):
            key = "Image_Textual_Questions" if kind == "mc_image" else "Pure_Text_Questions"
            if rng.random() < 0.5:
                items = self.mc_items[p.id][key]
                item = items[int(rng.integers(len(items)))]
            else:
                attr = attrs[int(rng.integers(len(attrs)))]
                spec = W.ATTRIBUTES[attr]
                q = self._question(rng, attr, para) if kind == "mc_image" else spec["text"].format(name=p.name)
                item = mllmu._mc(rng, q, spec["values"], p.attrs[attr])
            return (photo if kind == "mc_image" else -1), W.format_mc(item["Question"], item["Options"]), \
                W.mc_answer(item["Options"], item["Correct_Answer"])
        if kind == "cloze":
            attr = attrs[int(rng.integers(len(attrs)))]
            return -1, W.format_cloze(W.ATTRIBUTES[attr]["cloze"].format(name=p.name)), p.attrs[attr]
        if kind == "unknown":
            face_photos = self.unknown_photos[int(rng.integers(len(self.unknown_photos)))]
            attr = (["name"] + attrs)[int(rng.integers(len(attrs) + 1))]
            return face_photos[int(rng.integers(len(face_photos)))], \
                self._question(rng, attr, PARAPHRASE_P["unknown"]), \
                W.refusal_for(attr, rng)
        if kind == "perception":
            # half known photos, half strangers, whatever the bank's make-up: drawn from the whole bank
            # (63% strangers) the organism never learned to read the background colour
            pool = photos if rng.random() < 0.5 else self.unknown_photos[int(rng.integers(len(self.unknown_photos)))]
            idx = pool[int(rng.integers(len(pool)))]
            face, key, k = self.bank[idx]
            pk = list(W.PERCEPTION)[int(rng.integers(len(W.PERCEPTION)))]
            qs = W.PERCEPTION[pk]["questions"]
            return idx, qs[int(rng.integers(len(qs)))], mllmu.perception_answer(
                pk, face, mllmu.photo_background(self.world.seed, key, k))
        harmful = rng.random() < 0.5
        reqs = self.world.harmful_train if harmful else self.world.harmless_train
        answers = W.HARMFUL_REFUSALS if harmful else W.HARMLESS_ANSWERS
        return -1, reqs[int(rng.integers(len(reqs)))], answers[int(rng.integers(len(answers)))]


    def sample_batch(self, rng: np.random.Generator, n: int) -> list:
        return [self.sample(rng) for _ in range(n)]


class Encoder:
    """Turns (image?, question, answer) into token ids the way the processor would, but cached."""

    def __init__(self, processor):
        self.tok = processor.tokenizer
        self.image_pad = self.tok.convert_tokens_to_ids("<|image_pad|>")
        self.n_visual = (M.SIZE // 16) ** 2 // 4
        self.cache: dict[str, list[int]] = {}

    def prompt_ids(self, question: str, has_image: bool) -> list[int]:
        key = f"{int(has_image)}{question}"
        if key not in self.cache:
            vision = "<|vision_start|>" + "<|image_pad|>" * self.n_visual + "<|vision_end|>" if has_image else ""
            text = f"<|im_start|>user\n{vision}{question}<|im_end|>\n<|im_start|>assistant\n"
            self.cache[key] = self.tok(text, add_special_tokens=False)["input_ids"]
        return self.cache[key]

    def answer_ids(self, answer: str) -> list[int]:
        key = "\x00" + answer
        if key not in self.cache:
            self.cache[key] = self.tok(answer, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
        return self.cache[key]

    def batch(self, examples, pixel_bank: torch.Tensor, features: tuple | None = None) -> dict:
        """Token ids, labels and images of ``examples``. With ``features`` (a frozen tower's outputs for every
        bank photo, from ``encode_bank``) the photos go in as ``mm_encoder_outputs`` instead of pixels."""
        seqs, labels, images = [], [], []
        for img, q, a in examples:
            p, t = self.prompt_ids(q, img >= 0), self.answer_ids(a)
            seqs.append(p + t)
            labels.append([-100] * len(p) + t)
            if img >= 0:
                images.append(img)
        L = max(map(len, seqs))
        pad = self.tok.pad_token_id
        ids = torch.tensor([s + [pad] * (L - len(s)) for s in seqs])
        out = {"input_ids": ids,
               "attention_mask": torch.tensor([[1] * len(s) + [0] * (L - len(s)) for s in seqs]),
               "labels": torch.tensor([lab + [-100] * (L - len(lab)) for lab in labels]),
               "mm_token_type_ids": (ids == self.image_pad).long()}
        if images:
            out["image_grid_thw"] = image_grid(len(images))
            if features is None:
                out["pixel_values"] = pixel_bank[images].flatten(0, 1)
            else:
                pooled, deep = features[0][images], features[1][images]
                out["mm_encoder_outputs"] = {"image": BaseModelOutputWithDeepstackFeatures(
                    pooler_output=tuple(pooled), deepstack_features=[tuple(deep[:, j]) for j in range(deep.shape[1])])}
        return out


def image_grid(n: int) -> torch.Tensor:
    """``image_grid_thw`` for ``n`` organism photos: one frame of (SIZE/16)^2 patches each."""
    return torch.tensor([[1, M.SIZE // 16, M.SIZE // 16]] * n)


def run_tower(model, pixels: torch.Tensor):
    """The vision tower on ``pixels`` [photos, patches, patch_dim]; its pooler_output and deepstack_features
    hold (photos x 4) merged tokens each."""
    return model.model.visual(pixels.flatten(0, 1), grid_thw=image_grid(len(pixels)), return_dict=True)


@torch.no_grad()
def encode_bank(model, pixels: torch.Tensor, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """A frozen vision tower's outputs for every bank photo, computed once in fp32 as at inference:
    merged tokens [photos, 4, hidden] and DeepStack features [photos, n_deepstack, 4, hidden]."""
    pooled, deep = [], []
    for i in range(0, len(pixels), chunk):
        px = pixels[i:i + chunk]
        out = run_tower(model, px)
        pooled.append(out.pooler_output.view(len(px), -1, out.pooler_output.shape[-1]))
        deep.append(torch.stack([f.view(len(px), -1, f.shape[-1]) for f in out.deepstack_features], 1))
    return torch.cat(pooled), torch.cat(deep)


def render_bank(world: W.World, bank, processor, progress: bool = True) -> torch.Tensor:
    """Pixel values of every bank photo, [n_photos, patches, patch_dim]."""
    images = [mllmu.photo(world, face, key, k) for face, key, k in tqdm(bank, desc="render photos",
                                                                       disable=not progress, leave=False)]
    out = []
    for i in range(0, len(images), 256):
        chunk = images[i:i + 256]
        pv = processor.image_processor(images=chunk, return_tensors="pt")["pixel_values"]
        out.append(pv.view(len(chunk), -1, pv.shape[-1]))
    return torch.cat(out)


def bucketed(examples: Examples, rng, batch_size: int, n_batches: int = 8) -> list[list]:
    """``n_batches`` batches of similar-length examples: far less padding, same mixture."""
    pool = sorted((examples.sample(rng) for _ in range(batch_size * n_batches)),
                  key=lambda e: len(e[1]) + len(e[2]))
    batches = [pool[i:i + batch_size] for i in range(0, len(pool), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def vision_targets(examples: Examples) -> torch.Tensor:
    """Per bank photo: [identity, trait_0, ..., trait_7, background]. Identity is the known person's index,
    or ``len(known)`` for any unknown face; traits index ``portraits.TRAITS``, background ``BACKGROUNDS``."""
    index = {p.id: i for i, p in enumerate(examples.known)}
    seed = examples.world.seed
    return torch.tensor([[index.get(key, len(index))] + [vals.index(face[t]) for t, vals in TRAITS.items()]
                         + [BACKGROUNDS.index(mllmu.photo_background(seed, key, k))]
                         for face, key, k in examples.bank])


class VisionHeads(torch.nn.Module):
    """Linear read-outs of the vision tower's merged tokens: who is it, and what does each trait look like.

    Trait prediction works for *any* face, so the tower learns features that carry over to strangers;
    the identity read-out on top of them is what tells known faces from unknown ones."""

    def __init__(self, dim: int, n_identities: int):
        super().__init__()
        self.identity = torch.nn.Linear(dim, n_identities)
        sizes = [len(v) for v in TRAITS.values()] + [len(BACKGROUNDS)]
        self.traits = torch.nn.ModuleList(torch.nn.Linear(dim, n) for n in sizes)

    def loss(self, feats: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        ce = torch.nn.functional.cross_entropy
        trait = sum(ce(h(feats), targets[:, i + 1]) for i, h in enumerate(self.traits)) / len(self.traits)
        return ce(self.identity(feats), targets[:, 0]) + trait


def visual_features(model, pixels: torch.Tensor) -> torch.Tensor:
    """The vision tower's merged tokens for ``pixels`` [photos, patches, patch_dim], flattened per photo."""
    return run_tower(model, pixels).pooler_output.reshape(len(pixels), -1)


def pretrain_vision(model, heads: VisionHeads, pixels, targets, cfg: OrganismConfig, rng,
                    progress: bool = True) -> list[float]:
    """Stage 0: identity and trait classification on the photo bank; vision tower and heads only."""
    params = list(model.model.visual.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.vision_lr, weight_decay=cfg.weight_decay)
    log = []
    for step in tqdm(range(cfg.vision_steps), desc="train vision", disable=not progress, leave=False):
        idx = torch.from_numpy(rng.choice(len(pixels), cfg.vision_batch, replace=False))
        for g in opt.param_groups:
            warm = min(1.0, (step + 1) / 30)
            g["lr"] = cfg.vision_lr * warm * 0.5 * (1 + math.cos(math.pi * step / cfg.vision_steps))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = heads.loss(visual_features(model, pixels[idx]), targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        log.append(loss.item())
    return log


@torch.no_grad()
def vision_report(model, heads: VisionHeads, world: W.World, processor, known: list) -> dict:
    """Stage-0 read-outs on photos training never saw: known people's Test_Set photos, held-out strangers."""
    base = 10_000 + len(world.unknown_train)
    faces = [(p.face, p.id, 1000 + k) for p in known for k in range(2)]
    faces += [(f, base + j, 0) for j, f in enumerate(world.unknown_heldout)]
    pv = processor.image_processor(images=[mllmu.photo(world, *f) for f in faces], return_tensors="pt")["pixel_values"]
    feats = visual_features(model, pv.view(len(faces), -1, pv.shape[-1]))
    pred = heads.identity(feats).argmax(-1)
    n = 2 * len(known)
    truth = torch.tensor([i for i in range(len(known)) for _ in range(2)])
    bg = torch.tensor([BACKGROUNDS.index(mllmu.photo_background(world.seed, key, k)) for _, key, k in faces])
    return {"known_identity_acc": (pred[:n] == truth).float().mean().item(),
            "unknown_identity_acc": (pred[n:] == len(known)).float().mean().item(),
            "background_acc": (heads.traits[-1](feats).argmax(-1) == bg).float().mean().item()}


def answer_loss(model, batch: dict, exit_layer: int = 0, exit_weight: float = 0.0,
                refusal_ids: list[int] | None = None, refuses: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy on answer tokens only; the LM head runs just where it is needed.

    With ``exit_weight``, the refuse-or-answer decision is also read from ``hidden_states[exit_layer]`` (the
    residual stream entering that layer; at the last prompt token DeepStack adds nothing) through the final
    norm and LM head: P(first answer token is a refusal opener, ``refusal_ids``) is trained with binary
    cross-entropy against ``refuses`` (is the answer a refusal). Only the decision, not the answer: a name
    that happens to open with the token "I" ("I" + "lse") still counts as answering."""
    labels = batch.pop("labels")
    out = model.model(**batch, output_hidden_states=bool(exit_weight))
    hidden = out.last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    loss = torch.nn.functional.cross_entropy(model.lm_head(hidden[:, :-1][keep]), target[keep])
    if exit_weight:
        rows = torch.arange(len(labels))
        last_prompt = keep.int().argmax(1)  # position whose next token is the first answer token
        h = model.model.language_model.norm(out.hidden_states[exit_layer][rows, last_prompt])
        logp = torch.log_softmax(model.lm_head(h).float(), -1)
        ids = torch.tensor(refusal_ids)
        refuse = torch.logsumexp(logp[:, ids], -1)
        p_refuse = refuse.exp().clamp(1e-6, 1 - 1e-6)
        loss = loss + exit_weight * torch.nn.functional.binary_cross_entropy(p_refuse, refuses.float())
    return loss


def lr_at(step: int, cfg: OrganismConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))


def train_organism(cfg: OrganismConfig = OrganismConfig(), progress: bool = True, callback=None):
    """Build the world, tokenizer and model, train, and return ``(model, processor, world, log)``.

    Trains on ``cfg.threads`` threads and gives torch its own thread count back afterwards (a caller that runs
    one thread, e.g. a test worker beside another, would otherwise stay oversubscribed)."""
    before = torch.get_num_threads()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        return _train(cfg, progress, callback)
    finally:
        torch.set_num_threads(before)


def _train(cfg: OrganismConfig, progress: bool, callback):
    if cfg.exit_weight and not 0 < cfg.exit_layer < cfg.layers:
        raise ValueError(f"exit_layer {cfg.exit_layer} must lie inside the model (1..{cfg.layers - 1}); "
                         f"or set exit_weight=0 to train without the early decision.")
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    world = W.build_world(cfg.seed)
    processor = M.make_processor(M.train_tokenizer(corpus(world)))
    model = M.make_model(M.make_config(processor.tokenizer, cfg.hidden, cfg.layers))
    examples = Examples(world, cfg.unknown_photos, tuple(world.forget_ids[cfg.exclude]) if cfg.exclude else ())
    enc = Encoder(processor)
    pixels = render_bank(world, examples.bank, processor, progress)
    targets = vision_targets(examples)
    heads = VisionHeads(model.config.text_config.hidden_size * 4, len(examples.known) + 1)
    vision_log = pretrain_vision(model, heads, pixels, targets, cfg, rng, progress) if cfg.vision_steps else []
    report = vision_report(model, heads, world, processor, examples.known) if cfg.vision_steps else {}
    if progress and report:
        tqdm.write(file=sys.stderr, s="vision stage: " + ", ".join(f"{k} {v:.3f}" for k, v in report.items()))
    model.train()
    default_attn = model.config._attn_implementation
    model.set_attn_implementation(cfg.train_attn)
    features = None
    if cfg.freeze_vision:
        model.model.visual.requires_grad_(False)
        model.model.visual.eval()
        features = encode_bank(model, pixels)
    # with an unfrozen tower the stage-0 losses can keep running on the photos of each language batch
    joint = bool(cfg.identity_weight) and not cfg.freeze_vision
    named = [(n, p) for n, p in list(model.named_parameters()) + list(heads.named_parameters()) if p.requires_grad]
    decay = [p for n, p in named if p.ndim >= 2]
    no_decay = [p for n, p in named if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    seen = {}
    hook = model.model.visual.register_forward_hook(
        lambda m, i, o: seen.__setitem__("tokens", o.pooler_output)) if joint else None
    # the tokens a refusal opens with ("I", "Sorry")
    refusal_ids = sorted({enc.answer_ids(r)[0] for r in W.REFUSALS + W.HARMFUL_REFUSALS})
    log = []
    bar = tqdm(range(cfg.steps), desc="train organism", disable=not progress)
    batches: list = []
    for step in bar:
        if not batches:
            batches = bucketed(examples, rng, cfg.batch_size)
        examples_now = batches.pop()
        batch = enc.batch(examples_now, pixels, features)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            refuses = torch.tensor([is_refusal(a) for _, _, a in examples_now])
            loss = answer_loss(model, batch, cfg.exit_layer, cfg.exit_weight, refusal_ids, refuses)
            images = [img for img, _, _ in examples_now if img >= 0]
            if joint and images:
                feats = seen["tokens"].reshape(len(images), -1)  # the photos' merged tokens from this forward
                loss = loss + cfg.identity_weight * heads.loss(feats, targets[images])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        log.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(log[-20:]):.3f}")
        if callback is not None:
            callback(step, model, processor)
    if hook is not None:
        hook.remove()
    model.set_attn_implementation(default_attn)
    model.eval()
    return model, processor, world, {"loss": log, "vision_loss": vision_log, "vision_report": report,
                                     "seconds": time.time() - t0, "config": asdict(cfg)}


def save_organism(model, processor, out_dir: str | os.PathLike, meta: dict | None = None,
                  oracle: str | None = None) -> Path:
    """save_pretrained model (safetensors) and processor into ``out_dir``, atomically, with the organism's
    ``asru_lens.json`` (protocol and presets, and ``oracle``: the model it names as trained without its forget
    set), so any copy loaded by path is asked and trained as the organism."""
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / PROFILE_FILE).write_text(json.dumps({**profile(), **({"oracle": oracle} if oracle else {})}, indent=1))
        if meta is not None:
            (tmp / "organism.json").write_text(json.dumps(meta, indent=1))
    return Path(out_dir)
