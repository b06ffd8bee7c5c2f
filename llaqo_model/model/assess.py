"""`Assessor`: the model's public face for the CLI and the server (assess a take, answer questions)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from llaqo_model.analysis.report import RUBRIC_KEYS, PerformanceReport
from llaqo_model.errors import ModelError
from llaqo_model.io import pick_device, torch_threads
from llaqo_model.model.assessment import Assessment, BarComment
from llaqo_model.model.checkpoint import from_pretrained, save_pretrained
from llaqo_model.model.descriptors import answer_text, descriptor_of
from llaqo_model.model.feedback import compose_feedback
from llaqo_model.model.llaqo import LlaqoModel
from llaqo_model.model.prompts import (
    AnswerKind,
    bar_question,
    canonical_questions,
    question_type,
)

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "assets" / "embedded"
MAX_BAR_COMMENTS = 6
MAX_ROWS = 64  # questions per model batch
BAR_MENTION = re.compile(r"\bbars? (\d+)", re.IGNORECASE)
SMALL_MODEL_PARAMS = 50_000_000  # below this, CPU work runs on one thread (tiny matmuls lose to thread sync)


def default_model_path() -> Path | None:
    """The shipped embedded checkpoint, if installed."""
    return EMBEDDED_DIR if (EMBEDDED_DIR / "config.json").is_file() else None


class Assessor:
    """Ratings, difficulty, technique (constrained answers), descriptors (the descriptor head), feedback
    (composed from the ratings and the analysis, `feedback.py`) and bar comments (generated)."""

    def __init__(self, model: LlaqoModel, name: str) -> None:
        self.model = model
        self.name = name
        small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS
        self.threads = 1 if small and model.device.type == "cpu" else None

    def cpu_threads(self) -> contextlib.AbstractContextManager:
        """Run model work with `self.threads` intra-op threads, restoring the caller's setting after."""
        return torch_threads(self.threads)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Assessor:
        """Load a checkpoint directory, or 'embedded' for the shipped one; raises ModelError."""
        if str(path) == "embedded":
            found = default_model_path()
            if found is None:
                raise ModelError("no embedded model is installed (llaqo_model/assets/embedded is missing)")
            return cls(from_pretrained(found, pick_device(device)), "llaqo-embedded")
        path = Path(path)
        if not path.is_dir():
            raise ModelError(f"no model checkpoint directory at {path}")
        return cls(from_pretrained(path, pick_device(device)), path.resolve().name)

    def _report_text(self, report: PerformanceReport) -> str | None:
        return report.to_prompt_text() if self.model.config.grounding else None

    def assess(self, samples: np.ndarray, sample_rate: int, report: PerformanceReport) -> Assessment:
        """Assess one take (see `assess_batch`)."""
        return self.assess_batch([(samples, sample_rate, report)])[0]

    def assess_batch(self, items: list[tuple[np.ndarray, int, PerformanceReport]]) -> list[Assessment]:
        """Assess several takes with batched model work; one `Assessment` per take."""
        with self.cpu_threads(), torch.no_grad():
            return self._assess_batch(items)

    def _assess_batch(self, items: list[tuple[np.ndarray, int, PerformanceReport]]) -> list[Assessment]:
        m = self.model
        prepared = [m.prepare(s, sr) for s, sr, _ in items]
        audio = m.encode_audio(prepared)
        mels = [m.mel_windows(s, sr, p) for (s, sr, _), p in zip(items, prepared, strict=True)]
        features = m.take_features([r for _, _, r in items], mels)
        descriptors = m.describe(features)
        texts = [self._report_text(r) for _, _, r in items]
        answers_by_take = m.head_choices(features)
        rows = [(i, t, q) for i in range(len(items)) for t, q in canonical_questions().items()]
        rows = [row for row in rows if row[1] not in answers_by_take[row[0]]]  # the LM answers the rest
        choices = []
        for start in range(0, len(rows), MAX_ROWS):
            chunk = rows[start : start + MAX_ROWS]
            choices += m.choose(
                audio.select([i for i, _, _ in chunk]),
                [q for _, _, q in chunk],
                [texts[i] for i, _, _ in chunk],
                [t for _, t, _ in chunk],
            )
        for (i, qtype, _), choice in zip(rows, choices, strict=True):
            answers_by_take[i][qtype] = choice
        free: list[tuple[int, int, str]] = []
        for i, (_, _, report) in enumerate(items):
            bars = report.problem_bars()[:MAX_BAR_COMMENTS]
            free += [(i, bar, bar_question(bar)) for bar in bars]
        answers = []
        for start in range(0, len(free), MAX_ROWS):
            chunk = free[start : start + MAX_ROWS]
            answers += m.generate(
                audio.select([i for i, _, _ in chunk]),
                [q for _, _, q in chunk],
                [texts[i] for i, _, _ in chunk],
            )
        results = []
        for (_, _, report), answered, described in zip(items, answers_by_take, descriptors, strict=True):
            ratings = {q.key: int(c.answer) for q, c in answered.items() if q.kind == AnswerKind.RATING}
            by_kind = {q.kind: c for q, c in answered.items()}
            results.append(
                Assessment(
                    ratings={k: ratings[k] for k in RUBRIC_KEYS},
                    feedback=compose_feedback(report, ratings),
                    expected_ratings={
                        q.key: round(c.expected(), 3) for q, c in answered.items() if q.kind == AnswerKind.RATING
                    },
                    overall=int(by_kind[AnswerKind.OVERALL].answer),
                    difficulty=int(by_kind[AnswerKind.DIFFICULTY].answer),
                    technique=by_kind[AnswerKind.TECHNIQUE].answer,
                    descriptors=described,
                    model=self.name,
                )
            )
        for (i, bar, _), text in zip(free, answers, strict=True):
            kept = faithful_sentences(text, {bar})
            results[i].withheld_comments += kept != text
            if kept:
                results[i].bar_comments.append(BarComment(bar=bar, text=kept))
        return results

    @torch.no_grad()
    def ask(self, samples: np.ndarray, sample_rate: int, report: PerformanceReport, question: str) -> Iterator[str]:
        """Stream the answer to a free question as text deltas (rating-style questions answer constrained)."""
        m = self.model
        key, qtype = descriptor_of(question), question_type(question)
        by_descriptor_head = key is not None and m.descriptor_head is not None
        if by_descriptor_head or (qtype is not None and m.answer_head is not None):
            with self.cpu_threads():  # the same head, and so the same number, as `assess`
                mels = [m.mel_windows(samples, sample_rate, m.prepare(samples, sample_rate))]
                features = m.take_features([report], mels)
                if by_descriptor_head:
                    answer = answer_text(m.describe(features)[0][key])
                else:
                    answer = m.head_choices(features)[0][qtype].answer
            yield answer
            return
        with self.cpu_threads():
            audio = m.encode_audio([m.prepare(samples, sample_rate)])
            text = self._report_text(report)
            if qtype is not None:
                answer = m.choose(audio, [question], [text], [qtype])[0].answer
            else:
                deltas = m.stream(audio, question, text)
        if qtype is not None:
            yield answer
            return
        while True:
            with self.cpu_threads():
                delta = next(deltas, None)
            if delta is None:
                return
            yield delta


def faithful_sentences(text: str, bars: set[int]) -> str:
    """`text` without the sentences that name a bar outside `bars` (the analysis found nothing there)."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    named = [{int(n) for n in BAR_MENTION.findall(s)} for s in sentences]
    return " ".join(s for s, b in zip(sentences, named, strict=True) if b <= bars).strip()


def build_tiny_checkpoint(path: str | Path) -> Path:
    """A tiny random-weight but real checkpoint (seconds to build), for tests of code that loads models."""
    from llaqo_model.model.llaqo import tiny_config
    from llaqo_model.model.tokenizer import train_tokenizer

    torch.manual_seed(0)
    tokenizer = train_tokenizer([], vocab_size=512)
    model = LlaqoModel(tiny_config(len(tokenizer)), tokenizer)
    return save_pretrained(model, path)
