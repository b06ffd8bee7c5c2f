"""One function per user action: a take file (and its score) in, typed results out.

`Coach` holds the analyser and, when a model is used, the assessor, both loaded once. Each action decodes
the take's audio once and hands the same samples to the analysis and the model. The CLI (`analyze`,
`annotate`, `batch`, `ask`) and the HTML report call these; the server has its own streaming flow over the same parts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llaqo_model.analysis.pipeline import Analyzer
from llaqo_model.analysis.report import DEFAULT_MIN_CONFIDENCE, PerformanceReport
from llaqo_model.analysis.score import Score, load_score
from llaqo_model.analysis.transcribe import TranscriberConfig
from llaqo_model.annotate import ScoreAnnotations, annotate_score, check_writable
from llaqo_model.errors import ModelError, ScoreError
from llaqo_model.io import load_audio
from llaqo_model.model.assess import Assessor, default_model_path
from llaqo_model.model.assessment import Assessment


@dataclass
class Coach:
    """The analyser and the optional model, loaded once, serving every take of a session."""

    analyzer: Analyzer
    assessor: Assessor | None = None

    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        use_model: bool = True,
        device: str = "auto",
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> Coach:
        """The analyser (stating issues at `min_confidence` or above), plus the model named by `model`
        ('embedded' or a folder), else the installed default."""
        assessor = None
        if use_model:
            path = model or default_model_path()
            assessor = Assessor.load(path, device=device) if path else None
        analyzer = Analyzer(config=TranscriberConfig(device=device), min_confidence=min_confidence)
        return cls(analyzer, assessor)

    def _take(
        self, take: str | Path, score: str | Path | None, bars: tuple[int, int] | None
    ) -> tuple[np.ndarray, int, Score | None]:
        parsed = load_score(score) if score else None
        if parsed is not None and bars is not None:
            parsed = parsed.bar_range(*bars)
        samples, rate = load_audio(take, max_duration_s=self.analyzer.max_duration_s)
        return samples, rate, parsed

    def assess_file(
        self, take: str | Path, score: str | Path | None = None, bars: tuple[int, int] | None = None
    ) -> tuple[PerformanceReport, Assessment | None]:
        """Analyse a take against its score (only printed bars `bars` when given) and assess it."""
        samples, rate, parsed = self._take(take, score, bars)
        report = self.analyzer.analyze_samples(samples, rate, parsed, audio_name=str(take))
        assessment = self.assessor.assess(samples, rate, report) if self.assessor is not None else None
        return report, assessment

    def annotate_file(
        self, take: str | Path, score: str | Path, out: str | Path, bars: tuple[int, int] | None = None
    ) -> tuple[PerformanceReport, Assessment | None, ScoreAnnotations]:
        """Assess a take and write its comments into a copy of its score (MusicXML at `out`)."""
        if not score:
            raise ScoreError("annotating needs the score the take was played from (--score)")
        check_writable(out)  # before the analysis, so a bad path costs nothing
        samples, rate, parsed = self._take(take, score, bars)
        report = self.analyzer.analyze_samples(samples, rate, parsed, audio_name=str(take))
        assessment = self.assessor.assess(samples, rate, report) if self.assessor is not None else None
        plan = annotate_score(report, parsed, score, out, assessment)
        return report, assessment, plan

    def ask_file(
        self, take: str | Path, question: str, score: str | Path | None = None, bars: tuple[int, int] | None = None
    ) -> Iterator[str]:
        """Analyse the take, then stream the model's answer to `question` as text deltas."""
        if self.assessor is None:
            raise ModelError("no model installed; pass --model DIR")
        samples, rate, parsed = self._take(take, score, bars)
        report = self.analyzer.analyze_samples(samples, rate, parsed, audio_name=str(take))
        yield from self.assessor.ask(samples, rate, report, question)
