"""LLaQo: audio encoder → Q-former → (`<AUDIO>` token + query tokens) spliced into a causal LM prompt.

Sequence per question: [BOS] "USER: " <AUDIO> q_1 … q_n [report text] question " ASSISTANT:" answer </s>.
The loss is cross-entropy on the answer tokens only (Eq. 2 of the paper).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from transformers import PreTrainedTokenizerFast

from llaqo_model.analysis.report import PerformanceReport
from llaqo_model.model.answer_head import AnswerHead, AnswerHeadConfig, head_answer
from llaqo_model.model.descriptor_head import DescriptorConfig, DescriptorHead
from llaqo_model.model.descriptors import DESCRIPTOR_KEYS
from llaqo_model.model.encoder import EncoderConfig, build_encoder
from llaqo_model.model.frontend import FrontendConfig, audio_windows
from llaqo_model.model.lm import LMConfig, Trie, add_lora, build_lm, decode
from llaqo_model.model.prompts import QuestionType, options_for, prompt_parts
from llaqo_model.model.qformer import QFormer, QFormerConfig
from llaqo_model.model.take_features import head_inputs, select_streams

SUB_CONFIGS = ("frontend", "encoder", "qformer", "lm", "descriptors", "answers")


@dataclass
class LlaqoConfig:
    """All component configs; `grounding` puts the report text into the prompt (False: paper-faithful);
    `descriptors` adds the head answering the 19 perceptual questions, `answers` the head answering the
    constrained questions (ratings, overall, difficulty, technique) in place of the LM (None: without)."""

    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    grounding: bool = True
    max_report_tokens: int = 160
    max_answer_tokens: int = 48
    descriptors: DescriptorConfig | None = None
    answers: AnswerHeadConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LlaqoConfig:
        """Inverse of `to_dict` (unknown keys are an error, so mismatched checkpoints fail early)."""
        enc = dict(data["encoder"])
        enc["channels"] = tuple(enc.get("channels", EncoderConfig.channels))
        head = data.get("descriptors")
        if head is not None:
            head = DescriptorConfig(**{**head, "streams": tuple(head.get("streams", DescriptorConfig.streams))})
        answers = data.get("answers")
        if answers is not None:
            streams = tuple(answers.get("streams", AnswerHeadConfig.streams))
            answers = AnswerHeadConfig(**{**answers, "streams": streams})
        return cls(
            frontend=FrontendConfig(**data["frontend"]),
            encoder=EncoderConfig(**enc),
            qformer=QFormerConfig(**data["qformer"]),
            lm=LMConfig(**data["lm"]),
            descriptors=head,
            answers=answers,
            **{k: v for k, v in data.items() if k not in SUB_CONFIGS},
        )


def paper_config() -> LlaqoConfig:
    """AudioMAE ViT-B/16 + 4-block Q-former with 32 queries + a Llama-2-7B-shaped (Vicuna-7b) LM with LoRA."""
    return LlaqoConfig(grounding=False)


def embedded_config(vocab_size: int) -> LlaqoConfig:
    """Small enough to train on two CPU cores: CNN encoder, 2-block Q-former, a ~1 M-parameter Llama."""
    return LlaqoConfig(
        encoder=EncoderConfig(kind="cnn", dim=128, channels=(16, 32, 48, 64), frozen=False),
        qformer=QFormerConfig(n_layer=2, n_query=8, dim=128, n_head=4, mlp_ratio=2.0, max_text=48, out_norm="batch"),
        lm=LMConfig(
            vocab_size=vocab_size,
            hidden_size=128,
            n_layer=4,
            n_head=4,
            n_kv_head=4,
            intermediate_size=344,
            max_positions=512,
            tie_embeddings=True,
            train="full",
        ),
        grounding=True,
        max_report_tokens=96,
        max_answer_tokens=40,
    )


def tiny_config(vocab_size: int, encoder: str = "cnn", lm_train: str = "full") -> LlaqoConfig:
    """A seconds-to-build random configuration for tests (any encoder kind, full or LoRA LM)."""
    enc = EncoderConfig(kind=encoder, dim=32, depth=2, n_head=2, channels=(8, 16, 16, 16), frozen=encoder == "audiomae")
    return LlaqoConfig(
        encoder=enc,
        qformer=QFormerConfig(n_layer=1, n_query=4, dim=32, n_head=2, mlp_ratio=2.0, max_text=32),
        lm=LMConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            n_layer=2,
            n_head=2,
            n_kv_head=2,
            intermediate_size=64,
            max_positions=512,
            tie_embeddings=True,
            train=lm_train,
            lora_r=4,
            lora_alpha=8,
            lora_dropout=0.0,
        ),
        max_report_tokens=48,
        max_answer_tokens=24,
    )


@dataclass
class AudioFeatures:
    """Encoded takes: features (B, windows, tokens, dim) and validity mask (B, windows, tokens)."""

    feats: torch.Tensor
    mask: torch.Tensor

    def select(self, index: list[int]) -> AudioFeatures:
        """Rows for each question (several questions may share one take)."""
        idx = torch.tensor(index, device=self.feats.device)
        return AudioFeatures(self.feats[idx], self.mask[idx])


@dataclass
class Choice:
    """A constrained answer: the chosen option and the probability of each option."""

    answer: str
    probs: dict[str, float]

    @classmethod
    def most_likely(cls, probs: dict[str, float]) -> Choice:
        """The option with the highest probability, with the whole distribution."""
        return cls(max(probs, key=probs.get), probs)

    def expected(self) -> float:
        """Expected value of a numeric answer under the option distribution."""
        return float(sum(float(k) * p for k, p in self.probs.items()))


def answer_loss(logits: torch.Tensor, labels: torch.Tensor, per_answer: bool) -> torch.Tensor:
    """Cross-entropy of (B, T, V) logits against (B, T) labels (-100: not scored), averaged over all scored
    tokens, or (`per_answer`) first within each row and then over the rows that have scored tokens."""
    tokens = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
    scored = (labels != -100).float()
    if not per_answer:
        return tokens.sum() / scored.sum().clamp(min=1)
    per_row = (tokens.view_as(scored) * scored).sum(-1) / scored.sum(-1).clamp(min=1)
    has = scored.sum(-1) > 0
    return per_row[has].mean() if has.any() else per_row.sum() * 0


class LlaqoModel(nn.Module):
    """The whole model. `tokenizer` is a PreTrainedTokenizerFast matching the LM's vocabulary."""

    def __init__(self, config: LlaqoConfig, tokenizer: PreTrainedTokenizerFast, lm: nn.Module | None = None) -> None:
        """Build every component; a given `lm` (e.g. a loaded PeftModel) replaces building one."""
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.encoder = build_encoder(config.encoder, config.frontend)
        lm = lm if lm is not None else build_lm(config.lm)
        config.lm.hidden_size = lm.config.hidden_size
        config.qformer.audio_dim = self.encoder.out_dim
        config.qformer.lm_dim = lm.config.hidden_size
        wrap = config.lm.train == "lora" and not hasattr(lm, "peft_config")  # a loaded PeftModel is ready
        self.lm = add_lora(lm, config.lm) if wrap else lm
        self.qformer = QFormer(config.qformer, text_dim=lm.config.hidden_size)
        self.audio_token = nn.Parameter(torch.randn(lm.config.hidden_size) * 0.02)
        self.descriptor_head = DescriptorHead(config.descriptors) if config.descriptors is not None else None
        self.answer_head = AnswerHead(config.answers) if config.answers is not None else None

    @property
    def device(self) -> torch.device:
        return self.audio_token.device

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on GPU, nothing on CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- audio -------------------------------------------------------------------------------------

    def prepare(self, samples: np.ndarray, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen, cacheable audio preprocessing (fbank windows or Transkun features)."""
        return self.encoder.prepare(samples, sample_rate)

    def encode_audio(self, prepared: list[tuple[torch.Tensor, torch.Tensor]]) -> AudioFeatures:
        """Run the encoder over every window of every take at once; regroup per take."""
        width = max(w.shape[1] for w, _ in prepared)
        windows = torch.cat([nn.functional.pad(w, (0, 0, 0, width - w.shape[1])) for w, _ in prepared])
        lengths = torch.cat([n for _, n in prepared])
        with self.autocast():
            feats, mask = self.encoder(windows.to(self.device), lengths.to(self.device))
        counts = [w.shape[0] for w, _ in prepared]
        w_max = max(counts)
        out = feats.new_zeros(len(prepared), w_max, *feats.shape[1:])
        out_mask = torch.zeros(len(prepared), w_max, feats.shape[1], dtype=torch.bool, device=feats.device)
        start = 0
        for i, c in enumerate(counts):
            out[i, :c] = feats[start : start + c]
            out_mask[i, :c] = mask[start : start + c]
            start += c
        return AudioFeatures(out, out_mask)

    def mel_windows(
        self, samples: np.ndarray, sample_rate: int, prepared: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The log-mel windows the descriptor head reads: the encoder's own input when it is fbank-based."""
        if self.config.encoder.kind == "transkun":
            return audio_windows(samples, sample_rate, self.config.frontend)
        return prepared

    def take_features(
        self, reports: list[PerformanceReport], prepared: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> np.ndarray:
        """Every per-take stream (B, INPUT_WIDTH), built once from each take's report and log-mel windows
        (`mel_windows`); each head reads its own streams from it."""
        rows = [head_inputs(r, w, n) for r, (w, n) in zip(reports, prepared, strict=True)]
        return np.stack(rows)

    def _head_input(self, features: np.ndarray, streams: tuple[str, ...]) -> torch.Tensor:
        return torch.from_numpy(select_streams(features, streams)).to(self.device)

    def describe(self, features: np.ndarray) -> list[dict[str, float]]:
        """The 19 perceptual descriptors (0–1) of each take (`take_features`); {} without the head."""
        if self.descriptor_head is None:
            return [{} for _ in features]
        inputs = self._head_input(features, self.descriptor_head.config.streams)
        values = self.descriptor_head(inputs).clamp(0, 1).cpu().numpy()
        return [{k: round(float(v), 4) for k, v in zip(DESCRIPTOR_KEYS, row, strict=True)} for row in values]

    def head_choices(self, features: np.ndarray) -> list[dict[QuestionType, Choice]]:
        """The answer head's constrained answers of each take (`take_features`); {} without the head."""
        if self.answer_head is None:
            return [{} for _ in features]
        probs = self.answer_head.answer_probs(self._head_input(features, self.answer_head.config.streams))
        return [{q: Choice(head_answer(q, p), p) for q, p in take.items()} for take in probs]

    # --- prompt assembly ---------------------------------------------------------------------------

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def embed_prompts(
        self,
        audio: AudioFeatures,
        questions: list[str],
        reports: list[str | None],
        answers: list[str | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded input embeddings, attention mask and labels (-100 except answer tokens + EOS)."""
        tok = self.tokenizer
        emb = self.lm.get_input_embeddings()
        dev = self.device
        q_ids = [self._ids(q)[-self.config.qformer.max_text :] or [tok.eos_token_id] for q in questions]
        q_len = max(len(q) for q in q_ids)
        q_tensor = torch.tensor([[tok.pad_token_id] * (q_len - len(q)) + q for q in q_ids], device=dev)
        q_mask = torch.tensor([[0] * (q_len - len(q)) + [1] * len(q) for q in q_ids], device=dev, dtype=torch.bool)
        with self.autocast():
            queries = self.qformer(audio.feats, audio.mask, emb(q_tensor), q_mask)
        rows, labels = [], []
        for i, question in enumerate(questions):
            report = reports[i] if self.config.grounding else None
            before, after = prompt_parts(question, None)
            report_ids = self._ids(f"\nReport: {report}")[: self.config.max_report_tokens] if report else []
            pre = [tok.bos_token_id] + self._ids(before)
            post = report_ids + self._ids(after)
            ans = (self._ids(answers[i]) + [tok.eos_token_id]) if answers and answers[i] is not None else []
            ids_pre = torch.tensor(pre, device=dev)
            ids_post = torch.tensor(post + ans, device=dev)
            row = torch.cat([emb(ids_pre), self.audio_token[None].to(queries.dtype), queries[i], emb(ids_post)])
            rows.append(row)
            labels.append([-100] * (len(pre) + 1 + queries.shape[1] + len(post)) + ans)
        length = max(r.shape[0] for r in rows)
        embeds = torch.stack([nn.functional.pad(r, (0, 0, length - r.shape[0], 0)) for r in rows])
        mask = torch.tensor([[0] * (length - r.shape[0]) + [1] * r.shape[0] for r in rows], device=dev)
        label_t = torch.tensor([[-100] * (length - len(lab)) + lab for lab in labels], device=dev)
        return embeds, mask, label_t

    # --- training ----------------------------------------------------------------------------------

    def forward(
        self,
        audio: AudioFeatures,
        questions: list[str],
        reports: list[str | None],
        answers: list[str],
        per_answer: bool = False,
    ) -> torch.Tensor:
        """Cross-entropy on the answer tokens: their mean (Eq. 2), or with `per_answer` the mean over answers
        of each answer's mean token loss, so a one-digit rating weighs as much as a long sentence."""
        embeds, mask, labels = self.embed_prompts(audio, questions, reports, answers)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with self.autocast():
            logits = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits
        return answer_loss(logits[:, :-1].float(), labels[:, 1:], per_answer)

    # --- inference ---------------------------------------------------------------------------------

    @torch.no_grad()
    def choose(
        self,
        audio: AudioFeatures,
        questions: list[str],
        reports: list[str | None],
        qtypes: list[QuestionType],
    ) -> list[Choice]:
        """Constrained answers: only the allowed options of each question type, then end."""
        tok = self.tokenizer
        option_lists = [options_for(t) or [] for t in qtypes]
        if any(not o for o in option_lists):
            raise ValueError("choose() needs constrained question types")
        seqs = [[self._ids(o) + [tok.eos_token_id] for o in opts] for opts in option_lists]
        tries: list[Trie | None] = [Trie(s) for s in seqs]
        embeds, mask, _ = self.embed_prompts(audio, questions, reports)
        generated: list[list[int]] = [[] for _ in questions]
        probs: list[dict[str, float] | None] = [None] * len(questions)
        longest = max(len(s) for opts in seqs for s in opts)
        with self.autocast():
            for step in decode(self.lm, embeds, mask, longest, tok.eos_token_id, tries):
                for i in range(len(questions)):
                    if probs[i] is None:
                        live = [k for k, s in enumerate(seqs[i]) if s[: len(generated[i])] == generated[i]]
                        firsts = {seqs[i][k][len(generated[i])] for k in live}
                        if len(firsts) > 1:
                            lp = step.logprobs[i]
                            p = {option_lists[i][k]: float(lp[seqs[i][k][len(generated[i])]].exp()) for k in live}
                            total = sum(p.values()) or 1.0
                            probs[i] = {k: v / total for k, v in p.items()}
                    generated[i].append(int(step.tokens[i]))
        out = []
        for i, opts in enumerate(option_lists):
            chosen = next((o for o, s in zip(opts, seqs[i], strict=True) if generated[i][: len(s)] == s), opts[0])
            out.append(Choice(chosen, probs[i] or {chosen: 1.0}))
        return out

    @torch.no_grad()
    def generate(
        self,
        audio: AudioFeatures,
        questions: list[str],
        reports: list[str | None],
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """Free-text answers for a batch of questions (greedy)."""
        tok = self.tokenizer
        embeds, mask, _ = self.embed_prompts(audio, questions, reports)
        ids: list[list[int]] = [[] for _ in questions]
        finished = [False] * len(questions)
        with self.autocast():
            for step in decode(
                self.lm, embeds, mask, max_new_tokens or self.config.max_answer_tokens, tok.eos_token_id
            ):
                for i, t in enumerate(step.tokens.tolist()):
                    if finished[i] or t == tok.eos_token_id:
                        finished[i] = True
                    else:
                        ids[i].append(t)
        return [tok.decode(row, skip_special_tokens=True).strip() for row in ids]

    @torch.no_grad()
    def stream(
        self, audio: AudioFeatures, question: str, report: str | None, max_new_tokens: int | None = None
    ) -> Iterator[str]:
        """Text deltas of one greedy answer, yielded as each token is generated."""
        tok = self.tokenizer
        embeds, mask, _ = self.embed_prompts(audio, [question], [report])
        ids: list[int] = []
        shown = ""
        with self.autocast():
            for step in decode(
                self.lm, embeds, mask, max_new_tokens or self.config.max_answer_tokens, tok.eos_token_id
            ):
                t = int(step.tokens[0])
                if t == tok.eos_token_id:
                    return
                ids.append(t)
                text = tok.decode(ids, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    continue
                if len(text) > len(shown):
                    yield text[len(shown) :]
                    shown = text
