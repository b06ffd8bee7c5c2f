"""Train a LLaQo model on a corpus manifest (the embedded model trains from scratch on CPU).

Each step takes a few takes, encodes their audio once, and asks several questions of each;
the loss is cross-entropy on answer tokens only. Training stops at `steps` or `time_budget_s`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from llaqo_model.model.checkpoint import from_pretrained, save_pretrained
from llaqo_model.model.descriptor_head import DescriptorConfig
from llaqo_model.model.llaqo import LlaqoModel, embedded_config
from llaqo_model.model.tokenizer import train_tokenizer
from llaqo_training.dataset import QA, TrainTake, load_takes, read_manifest
from llaqo_training.descriptor_fit import HeadFit, fit_head

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """What to train and for how long."""

    manifest: str
    out: str
    encoder: str = "cnn"  # cnn or transkun (audiomae is too heavy for CPU training)
    grounding: bool = True
    steps: int = 3000
    time_budget_s: float = 1500.0
    batch_takes: int = 4
    questions_per_take: int = 4
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 100
    vocab_size: int = 1024
    seed: int = 0
    cache_dir: str | None = None
    threads: int | None = None
    init_from: str | None = None  # continue training a checkpoint (its tokenizer and config) instead
    label_share: float = 0.5  # share of each take's sampled questions that are label (rating …) questions
    descriptor_manifest: str | None = None  # PercePiano manifest: fit the descriptor head on its training takes
    descriptor_head: DescriptorConfig = field(default_factory=DescriptorConfig)
    descriptor_fit: HeadFit = field(default_factory=HeadFit)


def fit(
    model: LlaqoModel,
    takes: list[TrainTake],
    steps: int,
    batch_takes: int = 4,
    questions_per_take: int = 4,
    lr: float = 2e-3,
    weight_decay: float = 0.01,
    warmup: int = 50,
    time_budget_s: float | None = None,
    seed: int = 0,
    log_every: int = 50,
    label_share: float = 0.5,
) -> list[float]:
    """AdamW with warm-up and cosine decay (gradient checkpointing on GPU); returns the loss of every step.

    The cosine runs over `steps` or over `time_budget_s`, whichever ends first, so a time-limited run still
    anneals. About `label_share` of each take's questions are label questions (ratings, difficulty, technique,
    composer), the rest open questions; without open questions all are label questions.
    """
    rng = random.Random(seed)
    if model.device.type == "cuda" and model.config.lm.gradient_checkpointing:
        model.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    model.train()
    losses: list[float] = []
    start = time.monotonic()
    for step in range(steps):
        progress = step / steps
        if time_budget_s:
            progress = max(progress, (time.monotonic() - start) / time_budget_s)
        scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        for group in opt.param_groups:
            group["lr"] = lr * max(scale, 0.05)
        batch = rng.sample(takes, min(batch_takes, len(takes)))
        audio = model.encode_audio([t.prepared for t in batch])
        index, questions, reports, answers = [], [], [], []
        for i, take in enumerate(batch):
            for qa in pick_questions(take, questions_per_take, label_share, rng):
                index.append(i)
                questions.append(qa.question)
                reports.append(take.report_text)
                answers.append(qa.answer)
        loss = model(audio.select(index), questions, reports, answers)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            recent = sum(losses[-log_every:]) / log_every
            log.info("step %d loss %.3f (%.0f s)", step + 1, recent, time.monotonic() - start)
        if time_budget_s is not None and time.monotonic() - start > time_budget_s:
            log.info("time budget reached after %d steps", step + 1)
            break
    model.eval()
    return losses


def pick_questions(take: TrainTake, n: int, label_share: float, rng: random.Random) -> list[QA]:
    """`n` of the take's questions, about `label_share` of them label questions (when it has both kinds)."""
    labels = [qa for qa in take.qa if qa.qtype.constrained]
    opens = [qa for qa in take.qa if not qa.qtype.constrained]
    if not labels or not opens:
        return rng.sample(take.qa, min(n, len(take.qa)))
    n_label = min(len(labels), max(1, round(n * label_share)))
    return rng.sample(labels, n_label) + rng.sample(opens, min(len(opens), n - n_label))


def train(config: TrainConfig) -> Path:
    """Tokenizer on the corpus text, the embedded model from scratch, `fit`, then save the checkpoint."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    entries = read_manifest(config.manifest)
    train_entries = [e for e in entries if e.get("split", "train") == "train"]
    if not train_entries:
        raise ValueError(f"{config.manifest} has no training takes")
    if config.init_from:
        model = from_pretrained(config.init_from)
    else:
        texts = [x[k] for e in entries for x in e.get("qa", []) for k in ("q", "a")]
        tokenizer = train_tokenizer([str(t) for t in texts], vocab_size=config.vocab_size)
        model_config = embedded_config(vocab_size=len(tokenizer))
        model_config.encoder.kind = config.encoder
        model_config.grounding = config.grounding
        model = LlaqoModel(model_config, tokenizer)
    kind = model.config.encoder.kind
    summary: dict = {"encoder": kind, "grounding": model.config.grounding, "init_from": config.init_from}
    if config.init_from and (Path(config.init_from) / "training.json").is_file():
        summary["base_training"] = json.loads((Path(config.init_from) / "training.json").read_text(encoding="utf-8"))
    if config.steps > 0:
        summary.update(train_language_model(model, train_entries, config))
    if config.descriptor_manifest:
        summary["descriptors"] = attach_descriptor_head(model, config)
    out = save_pretrained(model, config.out)
    (out / "training.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return out


def train_language_model(model: LlaqoModel, train_entries: list[dict], config: TrainConfig) -> dict:
    """`fit` the audio encoder, Q-former and LM on the manifest's questions; returns the run's summary."""
    kind = model.config.encoder.kind
    cache = Path(config.cache_dir) / kind if config.cache_dir else None
    t0 = time.monotonic()
    takes = load_takes(train_entries, model.prepare, cache, grounding=model.config.grounding)
    log.info("prepared %d takes in %.0f s", len(takes), time.monotonic() - t0)
    t0 = time.monotonic()
    losses = fit(
        model,
        takes,
        config.steps,
        config.batch_takes,
        config.questions_per_take,
        config.lr,
        config.weight_decay,
        config.warmup,
        config.time_budget_s,
        config.seed,
        label_share=config.label_share,
    )
    elapsed = time.monotonic() - t0
    final = sum(losses[-50:]) / len(losses[-50:])
    log.info("trained %d steps in %.0f s, final loss %.3f", len(losses), elapsed, final)
    return {"steps": len(losses), "seconds": round(elapsed), "final_loss": round(final, 4), "train_takes": len(takes)}


def attach_descriptor_head(model: LlaqoModel, config: TrainConfig) -> dict:
    """Fit the descriptor head on the PercePiano manifest's training passages and give it to the model."""
    from llaqo_model.model.descriptor_head import DescriptorHead
    from llaqo_training.descriptor_eval import training_table

    assert config.descriptor_manifest is not None
    t0 = time.monotonic()
    table = training_table(read_manifest(config.descriptor_manifest), config.descriptor_manifest)
    if not table.ids:
        raise ValueError(f"{config.descriptor_manifest} has no training takes with descriptors")
    head: DescriptorHead = fit_head(table, config.descriptor_head, config.descriptor_fit)
    model.config.descriptors = config.descriptor_head
    model.descriptor_head = head.to(model.device)
    return {
        "train_takes": len(table.ids),
        "train_passages": len(set(table.passages)),
        "train_reports": "performance MIDI, score-aligned",
        "streams": list(config.descriptor_head.streams),
        "fit": f"MLP {config.descriptor_head.hidden} hidden, {config.descriptor_fit.epochs} epochs AdamW"
        if config.descriptor_head.hidden
        else "linear: ridge per scale, alpha by 5-fold CV over training passages",
        "seconds": round(time.monotonic() - t0),
    }
