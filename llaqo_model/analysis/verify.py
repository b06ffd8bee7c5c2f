"""Score-informed verification: every candidate wrong, missed or extra note checked against the audio.

The alignment proposes candidates from the transcribed notes; the transcriber's own onset evidence
(`OnsetEvidence`: how strongly each key was heard struck at each frame, from the same Transkun pass) then
says how sure each one is. A written note the transcriber did not output is the less likely left out the
more strongly its key was heard near its time (a key scored at about Transkun's threshold, 0, is a coin
flip); a wrong note is sure when the played key was heard clearly; an extra note is heard as a strike of
its own whenever it was transcribed.

Each check gives features; a logistic model per kind turns them into a confidence (0–1). Its weights were
fitted by `benchmarks/bench_analysis.py --fit` on the benchmark's tuning pieces (candidates labelled real
when the analysis of the performance MIDI itself — what was actually played — reports the same issue), each
weight kept to the sign physics gives it (`SIGNS`), strongly regularised, every piece weighing the same. On
those pieces the evidence that separates real from false candidates is the written key's onset score for a
missed note and the played key's for a wrong note; the written key's score under a wrong note and an extra
note's score and loudness added nothing (weights 0). A missed inner voice of a chord whose outer keys were
heard (masked by them) gets a weight of its own from a refit on 16 tuning pieces (-1.1), but that refit
nearly drops the written key's own evidence (a key heard just under the threshold would be stated missed),
so it is not shipped: the feature is computed and weighs 0 until a refit on cleaner labels keeps both.

Extra notes heard only under the transcriber's threshold (`faint.py`, made candidates where the audio's spectrum
needs the key, `spectrum.py`) have features of their own: the peak's score and the spectrum's gain. The
extra-note weights were refitted with them on 8 tuning pieces (`bench_analysis.py --fit extra_note`: 39
candidates, 38 real; few, so the refit mostly says that candidates past the spectrum check are real), the
missed and wrong weights kept (refitting them drops the written key's own evidence again, as above).
"""

from __future__ import annotations

import math

import numpy as np

from llaqo_model.analysis.report import Issue, IssueKind, Note
from llaqo_model.analysis.spectrum import OnsetSpectrum
from llaqo_model.analysis.transcribe import OnsetEvidence

EXPECTED_REACH_S = 0.1  # where a written note may start around its time-map time (chords spread, rubato)
OWN_REACH_S = 0.035  # a transcribed note's own onset: within about one and a half frames
EVIDENCE_CLIP = 12.0  # scores beyond ±12 are all "certainly struck / certainly not": clip before weighting
NEIGHBOUR_WINDOW_S = 1.0  # the notes an extra note is compared with for loudness
BRUSHED_GAIN = 0.1  # about what a brushed key adds to the fit of the spectrum (`spectrum.explained_gain`)…
GAIN_CLIP = 3.0  # …and beyond three times that, a key is as surely there as it gets
# The direction each feature of `issue_features` may push the confidence (the fit keeps these signs): a missed
# note is less likely the more its key was heard; a wrong note more likely the more the played key and the
# less the written key were heard; an extra note more likely the clearer and the louder it was struck, and a
# key heard only under the transcriber's threshold (`faint.py`) less likely, the less so the higher its peak.
SIGNS: dict[IssueKind, tuple[int, ...]] = {
    IssueKind.MISSED_NOTE: (-1, -1),
    IssueKind.WRONG_NOTE: (-1, 1),
    IssueKind.EXTRA_NOTE: (1, 1, -1, 1, 1),
}
# Logistic weights (bias, then one per feature of `issue_features`), fitted by bench_analysis.py --fit.
WEIGHTS: dict[IssueKind, tuple[float, ...]] = {
    IssueKind.MISSED_NOTE: (-0.397, -0.357, 0.0),
    IssueKind.WRONG_NOTE: (-2.754, 0.0, 2.024),
    IssueKind.EXTRA_NOTE: (4.019, 0.475, 0.0, -0.225, 1.096, 0.638),
}


def _clip(score: float) -> float:
    return float(np.clip(score, -EVIDENCE_CLIP, EVIDENCE_CLIP))


def issue_features(
    issue: Issue, evidence: OnsetEvidence, notes: list[Note], spectrum: OnsetSpectrum | None = None
) -> tuple[float, ...] | None:
    """The audio evidence about one candidate note issue (None for other kinds):

    * missed: the written key's onset evidence near its expected time, and that evidence again (rescaled to
      0 = not heard at all, 1 = at the threshold) when the key lies between keys heard struck there: an inner
      voice of a chord whose other tones sounded is masked by them, so a faint peak means more there;
    * wrong: the written key's evidence there, and the played key's at its onset;
    * extra, transcribed: the played key's evidence at its onset, log2 of its velocity over its neighbours'
      median, then 0, 0, 0;
    * extra, heard only under the transcriber's threshold (no note of its own, `faint.py`): 0, 0, then 1, the
      peak's score (from `faint.FAINT_FLOOR` to 0), and how much of the spectrum there the key alone explains
      (`spectrum.explained_gain` in units of `BRUSHED_GAIN`; such candidates are made only where the spectrum
      is at hand).
    """
    if issue.kind == IssueKind.MISSED_NOTE and issue.expected_pitch is not None:
        heard = _clip(evidence.at(issue.expected_pitch, issue.time_s, EXPECTED_REACH_S))
        chord = [n.pitch for n in notes if abs(n.onset - issue.time_s) <= EXPECTED_REACH_S]
        inner = bool(chord) and min(chord) < issue.expected_pitch < max(chord)
        return heard, inner * min(heard + EVIDENCE_CLIP, EVIDENCE_CLIP) / EVIDENCE_CLIP
    if issue.kind == IssueKind.WRONG_NOTE and issue.pitch is not None and issue.expected_pitch is not None:
        against = evidence.at(issue.expected_pitch, issue.time_s, EXPECTED_REACH_S)
        return _clip(against), _clip(evidence.at(issue.pitch, issue.time_s, OWN_REACH_S))
    if issue.kind == IssueKind.EXTRA_NOTE and issue.pitch is not None:
        heard = _clip(evidence.at(issue.pitch, issue.time_s, OWN_REACH_S))
        own = next((n for n in notes if n.pitch == issue.pitch and abs(n.onset - issue.time_s) < 1e-3), None)
        if own is None:
            gain = spectrum.explained_gain(issue.pitch, issue.time_s) if spectrum is not None else 0.0
            return 0.0, 0.0, 1.0, min(heard, 0.0), min(gain / BRUSHED_GAIN, GAIN_CLIP)
        nearby = [n.velocity for n in notes if abs(n.onset - issue.time_s) < NEIGHBOUR_WINDOW_S and n is not own]
        loudness = math.log2(own.velocity / float(np.median(nearby))) if nearby else 0.0
        return heard, float(np.clip(loudness, -3, 3)), 0.0, 0.0, 0.0
    return None


def confidence(kind: IssueKind, features: tuple[float, ...]) -> float:
    """The calibrated probability that a candidate of `kind` with these features is real."""
    bias, *weights = WEIGHTS[kind]
    z = bias + sum(w * x for w, x in zip(weights, features, strict=True))
    return round(1.0 / (1.0 + math.exp(-z)), 3)


def verify_issues(
    issues: list[Issue], evidence: OnsetEvidence, notes: list[Note], spectrum: OnsetSpectrum | None = None
) -> None:
    """Set the confidence of every wrong, missed and extra note in `issues` from the audio evidence."""
    for issue in issues:
        features = issue_features(issue, evidence, notes, spectrum)
        if features is not None:
            issue.confidence = confidence(issue.kind, features)
