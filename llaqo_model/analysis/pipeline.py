"""audio + score → transcription → alignment → measures → one `PerformanceReport`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llaqo_model.analysis.align import align_to_score
from llaqo_model.analysis.marks import mark_written
from llaqo_model.analysis.metrics import build_bars, score_free_measures, score_measures
from llaqo_model.analysis.report import DEFAULT_MIN_CONFIDENCE, Note, PedalInterval, PerformanceReport
from llaqo_model.analysis.score import Score, load_score
from llaqo_model.analysis.spectrum import OnsetSpectrum
from llaqo_model.analysis.transcribe import OnsetEvidence, Transcriber, TranscriberConfig
from llaqo_model.io import DEFAULT_MAX_DURATION_S, check_samples, load_audio, resample, to_mono


class Analyzer:
    """Holds the transcriber (loaded once) and turns takes into reports."""

    def __init__(
        self,
        transcriber: Transcriber | None = None,
        config: TranscriberConfig | None = None,
        max_duration_s: float = DEFAULT_MAX_DURATION_S,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> None:
        self.transcriber = transcriber or Transcriber(config)
        self.max_duration_s = max_duration_s
        self.min_confidence = min_confidence

    @property
    def sample_rate(self) -> int:
        """The sample rate the transcriber works at."""
        return self.transcriber.sample_rate

    def analyze_file(
        self,
        audio_path: str | Path,
        score_path: str | Path | None = None,
        bars: tuple[int, int] | None = None,
    ) -> PerformanceReport:
        """Analyse an audio file, with its score (optionally only printed bars `bars`) when given."""
        score = load_score(score_path) if score_path else None
        if score is not None and bars is not None:
            score = score.bar_range(*bars)
        samples, _ = load_audio(audio_path, self.sample_rate, self.max_duration_s)
        return self._analyze(samples, str(audio_path), score)

    def analyze_samples(
        self,
        samples: np.ndarray,
        sample_rate: int,
        score: Score | str | Path | None = None,
        audio_name: str = "stream",
    ) -> PerformanceReport:
        """Analyse audio already in memory ((frames,) or (frames, channels), any rate)."""
        mono = to_mono(samples)
        check_samples(mono, sample_rate, self.max_duration_s)
        if score is not None and not isinstance(score, Score):
            score = load_score(score)
        return self._analyze(resample(mono, sample_rate, self.sample_rate), audio_name, score)

    def _analyze(self, samples: np.ndarray, audio_name: str, score: Score | None) -> PerformanceReport:
        heard = self.transcriber.transcribe_with_evidence(samples)
        duration_s = len(samples) / self.sample_rate
        spectrum = OnsetSpectrum(samples, self.sample_rate)
        report = report_from_notes(heard.notes, heard.pedal, duration_s, audio_name, score, heard.evidence, spectrum)
        report.min_confidence = self.min_confidence
        return report


def report_from_notes(
    notes: list[Note],
    pedal: list[PedalInterval],
    duration_s: float,
    audio_name: str,
    score: Score | None,
    evidence: OnsetEvidence | None = None,
    spectrum: OnsetSpectrum | None = None,
) -> PerformanceReport:
    """Build the report from performed notes (transcribed or from MIDI) and an optional score; with the
    transcriber's `evidence` each note issue is checked against the audio (`verify.py`), and with the audio's
    `spectrum` too, keys heard struck under the transcriber's threshold whose partials the spectrum needs are
    extra-note candidates (`faint.py`, `spectrum.py`), as `Analyzer` makes every report."""
    report = PerformanceReport(
        audio=audio_name,
        score=score.path if score is not None else None,
        duration_s=round(float(duration_s), 3),
        notes=notes,
        pedal=pedal,
    )
    report.measures, report.available_measures = score_free_measures(notes, pedal, duration_s)
    if not notes:
        report.warnings.append("no piano notes were heard in the take")
    if score is not None:
        alignment = align_to_score(score, notes)
        report.alignment = alignment.summary
        report.score_notes = alignment.score_notes()
        if alignment.summary.matches_score:
            report.bars = build_bars(score, alignment, notes, pedal, evidence, spectrum)
            report.measures = score_measures(report.bars, report.measures)
            mark_written(report, score)
            report.available_measures = sorted(set(report.available_measures) | {"score"})
        else:
            report.score_mismatch = (
                f"the take does not match the score (only {100 * alignment.summary.coverage:.0f}% of "
                "its notes were found); no bar-level comments were made"
            )
            report.warnings.append(report.score_mismatch)
    return report
