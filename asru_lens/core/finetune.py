"""The vanilla step: fine-tune a Qwen3-VL on MLLMU-Bench's fictitious profiles (or re-teach any split).

Every MLLMU-Bench and ASRU number starts from a *vanilla* model: the base Qwen3-VL fine-tuned on Full_Set.
The authors' recipe (their ``MLLMU_finetune.py``) is the default:

==================  ===========================================================================================
adapters            LoRA r=16, alpha=16, dropout 0.05 on every linear layer of the language model
                    (``asru_lens.core.training``; never the vision tower or the merger), merged before saving
optimiser           AdamW, lr 5e-4, linear decay to 0, 5 epochs, batch 4 (MLLMU-Bench's own recipe: lr 2e-5)
loss                next-token cross-entropy on the whole chat sequence (question, image tokens, template and
                    answer), padding masked
data                each row's QA pairs: MLLMU's ``metadata`` pairs where the column exists (their fine-tuning
                    data), else its Generation_Task questions (with the photo for Image_Textual ones)
==================  ===========================================================================================

``finetune(lens, world, cfg)`` trains ``lens.model`` in place and returns its log; ``lens.save(out)`` writes the
merged model, which ``asru_lens.load(out)`` reopens. Gradient accumulation and gradient checkpointing are
options; checkpoints are resumable and atomic, like stage 2's. On the organism's world the same call re-teaches
a model that has forgotten (``split="forget_10"``): the relearning that ``asru_lens.measure.residue`` measures.

**Data-parallel.** Launched as several processes (``torchrun --nproc_per_node N -m asru_lens finetune ...``, or
``accelerate launch`` with DDP or DeepSpeed in its config), the loop goes through accelerate's ``Accelerator``:
every process builds the same global batch of ``batch_size`` questions, trains on its own share of it, and the
gradients are averaged before each step, so the processes end with equal weights and the run follows the
one-process run at the same global batch. One process trains as it always has.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from asru_lens.core import checkpoint, data
from asru_lens.core.training import LoRA, check_trainable, launched, optimise, optimizer, trainable, weights_digest
from asru_lens.core.data import QA


@dataclass
class FinetuneConfig:
    split: str = "Full_Set"            # the MLLMU subset to learn (forget_10 ... to re-teach)
    trainable: str = "lora"            # or "layers": the decoder layers in full
    lora_r: int = LoRA.r               # alpha and dropout: the one set of LoRA defaults (asru_lens.core.training)
    lr: float = 5e-4
    epochs: int = 5
    batch_size: int = 4
    grad_accum: int = 1                # optimiser step every grad_accum batches
    answer_only: bool = False          # loss on the answer tokens only (the authors' --ans_only); default: all
    gradient_checkpointing: bool = False
    max_steps: int | None = None       # stop after this many optimiser steps (quick looks, tests)
    max_grad_norm: float | None = None # the authors do not clip
    weight_decay: float = 0.0
    checkpoint_every: int = 0          # optimiser steps between checkpoints (0: none)
    seed: int = 42

    def check(self) -> "FinetuneConfig":
        check_trainable(self.trainable)
        for name in ("epochs", "batch_size", "grad_accum", "lora_r"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be 1 or more.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr!r} must be a positive number.")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps} must be 1 or more (or None for all epochs).")
        return self


def finetune_config(lens, **kw) -> FinetuneConfig:
    """The authors' recipe, then the model's ``finetune`` presets, then ``kw``."""
    return FinetuneConfig(**{**lens.presets.get("finetune", {}), **kw}).check()


def finetune_items(rows: list[dict]) -> list[QA]:
    """The QA pairs to learn from MLLMU rows: ``metadata`` (MLLMU's fine-tuning pairs) where present, else the
    Generation_Task questions."""
    out = []
    for row in rows:
        meta = row.get("metadata")
        if meta:
            pairs = json.loads(meta) if isinstance(meta, str) else meta
            out += [QA(p["Question"], p["Answer"], row["images"][0], str(row["ID"]), "metadata") for p in pairs
                    if p.get("Question") and p.get("Answer")]
        else:
            out += data.generation_items([row])
    if not out:
        raise ValueError("no QA pairs to fine-tune on: the rows have neither `metadata` nor Generation_Task.")
    return out


def chat_batch(lens, items: list[QA], answer_only: bool = False):
    """Processor batch of whole chat sequences (question + answer) with ``labels``: the input ids, padding
    masked with -100 (and, with ``answer_only``, everything up to the assistant header too)."""
    texts, images = [], []
    for q in items:
        msgs = lens.messages(q.question, q.image) + [{"role": "assistant",
                                                       "content": [{"type": "text", "text": q.answer}]}]
        texts.append(lens.processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False))
        images += [q.image] if q.image is not None else []
    lens.tokenizer.padding_side = "left"
    enc = lens.processor(text=texts, images=images or None, return_tensors="pt", padding=True).to(lens.device)
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    if answer_only:      # the answer starts after the last "<|im_start|>assistant\n"
        header = lens.post_instruction_tokens()
        start_id = lens.tokenizer.convert_tokens_to_ids("<|im_start|>")
        after = len(header) - header.index("<|im_start|>")
        for row in range(labels.shape[0]):
            last = (enc["input_ids"][row] == start_id).nonzero().max().item()
            labels[row, :last + after] = -100
    enc["labels"] = labels
    return enc


def data_parallel():
    """accelerate's ``Accelerator`` when this process is one of several (``WORLD_SIZE`` > 1, as torchrun and
    accelerate launch set it), else None."""
    if launched()[1] < 2:
        return None
    from accelerate import Accelerator  # the optional extra for data-parallel runs
    return Accelerator(cpu=not torch.cuda.is_available())


def share(batch: list, rank: int, world: int) -> list:
    """Process ``rank``'s part of a global batch (every ``world``-th item; a batch shorter than ``world``, the
    end of an epoch, is repeated so that no process is left without one)."""
    return [batch[i % len(batch)] for i in range(rank, max(len(batch), world), world)]


def finetune(lens, items: list[QA], cfg: FinetuneConfig = FinetuneConfig(), progress: bool = True,
             checkpoint_dir=None, resume: bool = False, stop_after: int | None = None, merge_lora: bool = True) -> dict:
    """Train ``lens.model`` in place on ``items`` (``finetune_items``); returns the log (loss per optimiser step,
    tokens/s). LoRA adapters are merged back at the end (``merge_lora=False`` leaves the peft model in
    ``log["policy"]``, e.g. to compare its logits with the merged model's). ``resume`` continues from the
    latest checkpoint in ``checkpoint_dir``; ``stop_after`` ends early after that many optimiser steps.
    Data-parallel (see the module docstring), the log also holds ``rank``, ``processes`` and, gathered from every
    process, ``ranks``: the items each one trained on, step by step, and the digest of its final weights."""
    cfg.check()
    acc = data_parallel()
    rank, world = (acc.process_index, acc.num_processes) if acc else (0, 1)
    if acc and lens.model.device != acc.device:
        lens.model.to(acc.device)
    if not items:
        raise ValueError("finetune needs at least one QA pair.")
    torch.manual_seed(cfg.seed)
    sampler = np.random.default_rng(cfg.seed)
    batches_per_epoch = math.ceil(len(items) / cfg.batch_size)
    total = math.ceil(batches_per_epoch * cfg.epochs / cfg.grad_accum)
    total = min(total, cfg.max_steps) if cfg.max_steps else total
    lora = LoRA(r=cfg.lora_r)
    with trainable(lens, cfg.trainable, lora=lora, checkpointing=cfg.gradient_checkpointing,
                   merge_lora=merge_lora) as (policy, params):
        opt, sched = optimizer(params, cfg.lr, cfg.weight_decay, total)
        log, start = {"loss": [], "tokens": []}, 0
        if resume:
            path = checkpoint.latest(checkpoint_dir)
            if path is None:
                raise FileNotFoundError(f"resume=True but {checkpoint_dir!r} holds no step-* checkpoint; run "
                                        f"without resume first (with checkpoint_every > 0).")
            start, log = checkpoint.load(path, params, opt, sampler, sched)
        log["trained"] = sorted(params)
        if cfg.trainable == "lora" and not merge_lora:
            log["policy"] = policy
        model = acc.prepare_model(policy) if acc else policy     # DDP: gradients averaged in backward()
        perms: dict[int, np.ndarray] = {}
        seen_items: list[list[int]] = []

        def batch_at(m: int) -> list[int]:
            """Micro-batch ``m`` (indices into ``items``): epoch ``m // batches_per_epoch`` of a per-epoch shuffle
            (so a resumed run draws the same batches as an uninterrupted one); this process's share of it."""
            epoch, b = divmod(m, batches_per_epoch)
            if epoch not in perms:
                perms[epoch] = np.random.default_rng([cfg.seed, epoch]).permutation(len(items))
            return share([int(i) for i in perms[epoch][b * cfg.batch_size:(b + 1) * cfg.batch_size]], rank, world)

        end = total if stop_after is None else min(total, stop_after)
        bar = tqdm(range(start, end), desc=f"finetune ({cfg.split})", disable=not progress, leave=False)
        t0, seen = time.time(), 0
        for step in bar:
            opt.zero_grad(set_to_none=True)
            loss_sum, tokens = 0.0, 0
            for micro in range(cfg.grad_accum):
                mine = batch_at(step * cfg.grad_accum + micro)
                seen_items.append(mine)
                enc = chat_batch(lens, [items[i] for i in mine], cfg.answer_only)
                loss = model(**enc).loss / cfg.grad_accum
                if acc:   # weigh each process's token mean by its share of the global batch's tokens, as one process
                    n = (enc["labels"][:, 1:] != -100).sum().float()        # would average them (DDP then
                    loss = loss * n * world / acc.reduce(n.detach().clone(), "sum")   # averages the gradients)
                loss.backward()
                loss_sum += loss.item()
                tokens += int(enc["attention_mask"].sum())
            optimise(opt, params, max_grad_norm=cfg.max_grad_norm)     # gradients accumulated above
            sched.step()
            if acc:      # the loss of the global batch (each process's part is weighted by its tokens above)
                loss_sum = float(acc.reduce(torch.tensor([loss_sum], device=acc.device), "mean")[0])
            log["loss"].append(round(loss_sum, 5))
            log["tokens"].append(tokens)
            seen += tokens
            bar.set_postfix(loss=f"{loss_sum:.3f}", tok_s=f"{seen / max(time.time() - t0, 1e-9):.0f}")
            if checkpoint_dir and cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and rank == 0:
                checkpoint.save(checkpoint_dir, step + 1, params, opt, sampler, log, cfg, sched)
        if acc:
            from accelerate.utils import gather_object  # the optional extra for data-parallel runs
            log["ranks"] = gather_object([{"rank": rank, "items": seen_items, "weights": weights_digest(params)}])
            log.update(rank=rank, processes=world)
    log.update(steps=end, total_steps=total, seconds=round(time.time() - t0, 1),
               tokens_per_s=round(seen / max(time.time() - t0, 1e-9), 1), config=asdict(cfg))
    return log
