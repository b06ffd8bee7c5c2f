"""Train a LLaQo model on a corpus manifest (the embedded model trains from scratch on CPU).

Each step takes a few takes, encodes their audio once, and asks several questions of each;
the loss is cross-entropy on answer tokens only (by default each answer weighs alike). Training stops at
`steps` or `time_budget_s`; the checkpoint and the trainer state (`trainer.pt`) in the output folder let a
run resume where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from llaqo_model.errors import LlaqoError, ModelError
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
    descriptor_reports: str = "transcribed"  # the training takes' reports: as inference makes them, or "midi"
    descriptor_head: DescriptorConfig = field(default_factory=DescriptorConfig)
    descriptor_fit: HeadFit = field(default_factory=HeadFit)
    answer_head: bool = True  # fit the answer head (ratings, overall, difficulty, technique) on the training takes
    answer_reports: str = "midi"  # its takes' reports: "midi" (performance MIDI), "transcribed", or "both"
    device: str = "auto"  # auto (CUDA when present), cpu or cuda
    lm: str | None = None  # local Hugging Face causal LM folder: LoRA-train it instead of the embedded LM
    per_answer_loss: bool = True  # weigh every answer alike, not every token (a rating is one digit)
    val_every: int = 0  # validation loss on the manifest's val split every this many steps (0: only at the end)
    save_every: int = 0  # checkpoint + trainer state into `out` every this many steps (0: only at the end)
    resume: bool = False  # continue the run saved in `out` (its weights, optimiser, RNG, step count)


TRAINER_STATE = "trainer.pt"  # optimiser, schedule position, RNG states and history, beside the checkpoint


@dataclass
class TrainerState:
    """Everything besides the weights that a resumed run needs to continue exactly where it stopped."""

    step: int = 0
    elapsed_s: float = 0.0  # training time so far (the time-budget schedule continues from it)
    losses: list[float] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)  # {"step", "loss"} per validation
    optimizer: dict | None = None
    python_rng: tuple | None = None
    torch_rng: torch.Tensor | None = None
    cuda_rng: list[torch.Tensor] | None = None

    def save(self, path: Path) -> None:
        """Write the state as a torch file."""
        torch.save(self.__dict__, str(path))

    @classmethod
    def load(cls, path: Path) -> TrainerState:
        """Read a state written by `save`."""
        return cls(**torch.load(str(path), weights_only=False))


def resolve_device(name: str) -> torch.device:
    """`auto` → CUDA when present, else CPU; `cuda` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda: no CUDA device is available")
    return torch.device(name)


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
    per_answer_loss: bool = False,
    state: TrainerState | None = None,
    val_takes: list[TrainTake] | None = None,
    val_every: int = 0,
    save_every: int = 0,
    on_save: Callable[[TrainerState], None] | None = None,
) -> list[float]:
    """AdamW with warm-up and cosine decay (gradient checkpointing on GPU); returns the loss of every step.

    The cosine runs over `steps` or over `time_budget_s`, whichever ends first, so a time-limited run still
    anneals. About `label_share` of each take's questions are label questions (ratings, difficulty, technique,
    composer), the rest open questions; without open questions all are label questions.
    A `state` from an earlier run (its step, optimiser, RNG) continues that run; `fit` updates it in place,
    records the validation loss on `val_takes` every `val_every` steps and calls `on_save` every
    `save_every` steps and at the end.
    """
    state = state if state is not None else TrainerState()
    rng = random.Random(seed)
    if model.device.type == "cuda" and model.config.lm.gradient_checkpointing:
        model.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    if state.optimizer is not None:
        opt.load_state_dict(state.optimizer)
    if state.python_rng is not None:
        rng.setstate(state.python_rng)
    if state.torch_rng is not None:
        torch.set_rng_state(state.torch_rng)
    if state.cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state.cuda_rng)
    model.train()
    start = time.monotonic() - state.elapsed_s
    first = state.step
    for step in range(first, steps):
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
        loss = model(audio.select(index), questions, reports, answers, per_answer=per_answer_loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        state.losses.append(loss.item())
        state.step = step + 1
        state.elapsed_s = time.monotonic() - start
        if log_every and state.step % log_every == 0:
            recent = sum(state.losses[-log_every:]) / len(state.losses[-log_every:])
            log.info("step %d loss %.3f (%.0f s)", state.step, recent, state.elapsed_s)
        over_time = time_budget_s is not None and state.elapsed_s > time_budget_s
        last = state.step == steps or over_time
        if val_takes and ((val_every and state.step % val_every == 0) or last):
            state.val.append({"step": state.step, "loss": round(validation_loss(model, val_takes, per_answer_loss), 4)})
            log.info("step %d validation loss %.3f", state.step, state.val[-1]["loss"])
            model.train()
        if on_save is not None and ((save_every and state.step % save_every == 0) or last):
            state.optimizer = opt.state_dict()
            state.python_rng = rng.getstate()
            state.torch_rng = torch.get_rng_state()
            state.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
            on_save(state)
        if over_time:
            log.info("time budget reached after %d steps", state.step)
            break
    model.eval()
    return state.losses


@torch.no_grad()
def validation_loss(model: LlaqoModel, takes: list[TrainTake], per_answer: bool, batch_takes: int = 4) -> float:
    """Mean loss over every question of every take (batches of `batch_takes` takes), in eval mode."""
    model.eval()
    total = weight = 0.0
    for start in range(0, len(takes), batch_takes):
        batch = takes[start : start + batch_takes]
        audio = model.encode_audio([t.prepared for t in batch])
        rows = [(i, qa) for i, take in enumerate(batch) for qa in take.qa]
        if not rows:
            continue
        loss = model(
            audio.select([i for i, _ in rows]),
            [qa.question for _, qa in rows],
            [batch[i].report_text for i, _ in rows],
            [qa.answer for _, qa in rows],
            per_answer=per_answer,
        )
        total += loss.item() * len(rows)
        weight += len(rows)
    return total / weight if weight else float("nan")


def pick_questions(take: TrainTake, n: int, label_share: float, rng: random.Random) -> list[QA]:
    """`n` of the take's questions, about `label_share` of them label questions (when it has both kinds)."""
    labels = [qa for qa in take.qa if qa.qtype.constrained]
    opens = [qa for qa in take.qa if not qa.qtype.constrained]
    if not labels or not opens:
        return rng.sample(take.qa, min(n, len(take.qa)))
    n_label = min(len(labels), max(1, round(n * label_share)))
    return rng.sample(labels, n_label) + rng.sample(opens, min(len(opens), n - n_label))


def train(config: TrainConfig) -> Path:
    """Tokenizer on the corpus text, the embedded model from scratch (or LoRA on a local LM), `fit`, then save
    the checkpoint; with `resume`, continue the run saved in `config.out`."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    entries = read_manifest(config.manifest)
    train_entries = [e for e in entries if e.get("split", "train") == "train"]
    if not train_entries:
        raise LlaqoError(f"{config.manifest} has no training takes")
    state = None
    out = Path(config.out)
    if config.resume:
        if not (out / TRAINER_STATE).is_file():
            raise ModelError(f"--resume: {out} holds no run to continue ({TRAINER_STATE} missing)")
        model = from_pretrained(out, str(device), trainable=True)
        state = TrainerState.load(out / TRAINER_STATE)
    elif config.init_from:
        model = from_pretrained(config.init_from, str(device), trainable=True)
    else:
        model = new_model(config, entries, device)
    model.to(device)
    kind = model.config.encoder.kind
    summary: dict = {
        "encoder": kind,
        "grounding": model.config.grounding,
        "init_from": config.init_from,
        "lm": model.config.lm.path or "embedded",
        "device": device.type,
        "loss": "mean over answers" if config.per_answer_loss else "mean over answer tokens",
    }
    if config.init_from and (Path(config.init_from) / "training.json").is_file():
        summary["base_training"] = json.loads((Path(config.init_from) / "training.json").read_text(encoding="utf-8"))
    if config.steps > 0:
        val_entries = [e for e in entries if e.get("split") == "val"]
        summary.update(train_language_model(model, train_entries, val_entries, config, state, summary))
    if config.answer_head and any(e.get("ratings") for e in train_entries):
        summary["answers"] = attach_answer_head(model, config, train_entries)
    if config.descriptor_manifest:
        summary["descriptors"] = attach_descriptor_head(model, config)
    save_pretrained(model, out)
    (out / "training.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return out


def new_model(config: TrainConfig, entries: list[dict], device: torch.device) -> LlaqoModel:
    """The embedded model with a tokenizer trained on the corpus text, or (`config.lm`) a local Hugging Face
    causal LM with its own tokenizer and LoRA adapters (bf16 on CUDA), under the embedded encoder and Q-former."""
    if config.lm:
        from llaqo_model.model.lm import LMConfig, build_lm, load_tokenizer

        tokenizer = load_tokenizer(config.lm)
        model_config = embedded_config(vocab_size=len(tokenizer))
        model_config.lm = LMConfig(path=str(Path(config.lm).resolve()), train="lora")
        dtype = torch.bfloat16 if device.type == "cuda" else None
        lm = build_lm(model_config.lm, dtype=dtype)
        model_config.lm.vocab_size = lm.config.vocab_size
    else:
        texts = [x[k] for e in entries for x in e.get("qa", []) for k in ("q", "a")]
        tokenizer = train_tokenizer([str(t) for t in texts], vocab_size=config.vocab_size)
        model_config = embedded_config(vocab_size=len(tokenizer))
        lm = None
    model_config.encoder.kind = config.encoder
    model_config.grounding = config.grounding
    return LlaqoModel(model_config, tokenizer, lm=lm)


def train_language_model(
    model: LlaqoModel,
    train_entries: list[dict],
    val_entries: list[dict],
    config: TrainConfig,
    state: TrainerState | None = None,
    summary: dict | None = None,
) -> dict:
    """`fit` the audio encoder, Q-former and LM on the manifest's questions (validation on `val_entries`),
    saving the checkpoint and trainer state into `config.out` as it goes; returns the run's summary."""
    kind = model.config.encoder.kind
    cache = Path(config.cache_dir) / kind if config.cache_dir else None
    t0 = time.monotonic()
    takes = load_takes(train_entries, model.prepare, cache, grounding=model.config.grounding)
    val_takes = load_takes(val_entries, model.prepare, cache, grounding=model.config.grounding)
    log.info(
        "prepared %d training and %d validation takes in %.0f s", len(takes), len(val_takes), time.monotonic() - t0
    )
    state = state if state is not None else TrainerState()
    out = Path(config.out)

    def run_summary(s: TrainerState) -> dict:
        final = sum(s.losses[-50:]) / max(1, len(s.losses[-50:]))
        return {
            "steps": s.step,
            "seconds": round(s.elapsed_s),
            "final_loss": round(final, 4),
            "train_takes": len(takes),
            "val_takes": len(val_takes),
            "val_loss": s.val,
        }

    def save(s: TrainerState) -> None:
        save_pretrained(model, out)
        s.save(out / TRAINER_STATE)
        info = {**(summary or {}), **run_summary(s)}
        (out / "training.json").write_text(json.dumps(info, indent=1), encoding="utf-8")

    fit(
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
        per_answer_loss=config.per_answer_loss,
        state=state,
        val_takes=val_takes,
        val_every=config.val_every,
        save_every=config.save_every,
        on_save=save,
    )
    result = run_summary(state)
    log.info("trained to step %d in %.0f s, final loss %.3f", state.step, state.elapsed_s, result["final_loss"])
    return result


def attach_descriptor_head(model: LlaqoModel, config: TrainConfig) -> dict:
    """Fit the descriptor head on the PercePiano manifest's training passages and give it to the model."""
    from llaqo_model.model.descriptor_head import DescriptorHead
    from llaqo_training.descriptor_eval import TRAIN_REPORTS, training_table

    assert config.descriptor_manifest is not None
    t0 = time.monotonic()
    table = training_table(
        read_manifest(config.descriptor_manifest), config.descriptor_manifest, config.descriptor_reports
    )
    if not table.ids:
        raise LlaqoError(
            f"{config.descriptor_manifest}: no training takes with descriptors and {config.descriptor_reports} reports"
        )
    head: DescriptorHead = fit_head(table, config.descriptor_head, config.descriptor_fit)
    model.config.descriptors = head.config  # sized to the trees fitted
    model.descriptor_head = head.to(model.device)
    return {
        "train_takes": len(table.ids),
        "train_passages": len(set(table.passages)),
        "train_reports": TRAIN_REPORTS[config.descriptor_reports],
        "streams": list(config.descriptor_head.streams),
        "fit": f"MLP {config.descriptor_head.hidden} hidden, {config.descriptor_fit.epochs} epochs AdamW"
        if config.descriptor_head.hidden
        else "linear: ridge per scale, alpha by 5-fold CV over training passages"
        + (", streams chosen per scale by the same folds" if config.descriptor_fit.select_streams else "")
        + (", boosted trees where the same folds say they beat the ridge" if config.descriptor_fit.trees else ""),
        **({"scale_streams": head.scale_streams} if config.descriptor_fit.select_streams else {}),
        **({"scale_fits": head.scale_fits} if config.descriptor_fit.trees else {}),
        "seconds": round(time.monotonic() - t0),
    }


def attach_answer_head(model: LlaqoModel, config: TrainConfig, train_entries: list[dict]) -> dict:
    """Fit the answer head on the training takes and give it to the model (it then answers every constrained
    question in place of the LM)."""
    from llaqo_model.model.answer_head import AnswerHeadConfig
    from llaqo_training.answer_fit import build_answer_table, fit_answer_head

    t0 = time.monotonic()
    table = build_answer_table(train_entries, config.manifest, config.answer_reports)
    if not table.ids:
        raise LlaqoError(f"{config.manifest}: no labelled training takes with {config.answer_reports} reports")
    head_config = AnswerHeadConfig()
    head, chosen = fit_answer_head(table, head_config)
    model.config.answers = head.config
    model.answer_head = head.to(model.device)
    return {
        "train_takes": len(table.ids),
        "train_pieces": len(set(table.groups)),
        "train_reports": config.answer_reports,
        "streams": list(head_config.streams),
        "fit": "ordered answers: adjacent-category ordinal logit; technique: multinomial logistic; "
        "regularisation by 5-fold CV over pieces; then LightGBM boosting from those scores "
        f"({head.config.trees} trees, {head.config.tree_nodes} nodes)",
        "regularisation": chosen,
        "seconds": round(time.monotonic() - t0),
    }
