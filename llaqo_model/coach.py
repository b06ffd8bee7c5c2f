"""One function per user action: a take file (and its score) in, typed results out.

`Coach` holds the analyser and, when a model is used, the assessor, each loaded once, on first use: every
action reads the take and its score before loading anything, so a bad file is refused in a moment rather
than after seconds of model loading. Each action decodes the take's audio once and hands the same samples
to the analysis and the model. The CLI (`analyze`,
`annotate`, `batch`, `ask`) and the HTML report call these; the server has its own streaming flow over the same parts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from llaqo_model.analysis.pipeline import Analyzer
from llaqo_model.analysis.report import DEFAULT_MIN_CONFIDENCE, PerformanceReport
from llaqo_model.analysis.score import Score, load_score
from llaqo_model.analysis.transcribe import TranscriberConfig
from llaqo_model.annotate import ScoreAnnotations, annotate_score, check_writable
from llaqo_model.errors import ModelError, ScoreError
from llaqo_model.io import DEFAULT_MAX_DURATION_S, load_audio
from llaqo_model.model.assess import Assessor, default_model_path
from llaqo_model.model.assessment import Assessment


@dataclass
class Coach:
    """The analyser and the optional model, loaded on first use, serving every take of a session."""

    model: str | Path | None = None
    use_model: bool = True
    device: str = "auto"
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    max_duration_s: float = DEFAULT_MAX_DURATION_S

    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        use_model: bool = True,
        device: str = "auto",
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> Coach:
        """The analyser (stating issues at `min_confidence` or above), plus the model named by `model`
        ('embedded' or a folder), else the installed default; both are loaded when a take first needs them."""
        return cls(model, use_model, device, min_confidence)

    @cached_property
    def assessor(self) -> Assessor | None:
        """The model, or None when none is used or installed."""
        if not self.use_model:
            return None
        path = self.model or default_model_path()
        return Assessor.load(path, device=self.device) if path else None

    @cached_property
    def analyzer(self) -> Analyzer:
        """The Transkun-backed analyser."""
        return Analyzer(
            config=TranscriberConfig(device=self.device),
            max_duration_s=self.max_duration_s,
            min_confidence=self.min_confidence,
        )

    def with_model_loaded(self) -> Coach:
        """Load the model now, so a missing or broken one is reported before a batch starts."""
        _ = self.assessor
        return self

    def _take(
        self, take: str | Path, score: str | Path | None, bars: tuple[int, int] | None
    ) -> tuple[np.ndarray, int, Score | None]:
        """The take's samples and its parsed score, read before any model is loaded."""
        parsed = load_score(score) if score else None
        if parsed is not None and bars is not None:
            parsed = parsed.bar_range(*bars)
        samples, rate = load_audio(take, max_duration_s=self.max_duration_s)
        return samples, rate, parsed

    def assess_file(
        self, take: str | Path, score: str | Path | None = None, bars: tuple[int, int] | None = None
    ) -> tuple[PerformanceReport, Assessment | None]:
        """Analyse a take against its score (only printed bars `bars` when given) and assess it."""
        samples, rate, parsed = self._take(take, score, bars)
        assessor = self.assessor  # a missing or broken model is reported before the analysis runs
        report = self.analyzer.analyze_samples(samples, rate, parsed, audio_name=str(take))
        assessment = assessor.assess(samples, rate, report) if assessor is not None else None
        return report, assessment

    def annotate_file(
        self, take: str | Path, score: str | Path, out: str | Path, bars: tuple[int, int] | None = None
    ) -> tuple[PerformanceReport, Assessment | None, ScoreAnnotations]:
        """Assess a take and write its comments into a copy of its score (MusicXML at `out`)."""
        if not score:
            raise ScoreError("annotating needs the score the take was played from (--score)")
        check_writable(out)  # before the analysis, so a bad path costs nothing
        samples, rate, parsed = self._take(take, score, bars)
        assessor = self.assessor
        report = self.analyzer.analyze_samples(samples, rate, parsed, audio_name=str(take))
        assessment = assessor.assess(samples, rate, report) if assessor is not None else None
        plan = annotate_score(report, parsed, score, out, assessment)
        return report, assessment, plan

    def ask_file(
        self, take: str | Path, question: str, score: str | Path | None = None, bars: tuple[int, int] | None = None
    ) -> Iterator[str]:
        """Analyse the take, then stream the model's answer to `question` as text deltas."""
        samples, rate, parsed = self._take(take, score, bars)
        if self.assessor is None:
            raise ModelError("no model installed; pass --model DIR")
        report = self.analyzer.analyze_samples(samples, rate, parsed, audio_name=str(take))
        yield from self.assessor.ask(samples, rate, report, question)
