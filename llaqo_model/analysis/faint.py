"""Keys struck too softly for the transcriber to output a note, found in its own onset evidence.

A key brushed by the finger that strikes its neighbour, or struck very softly, often scores just under
Transkun's decision threshold (0) in `OnsetEvidence`: no note is transcribed, yet the evidence shows a clear
peak at that key and moment. As in score-informed transcription for tutoring (a transcription read against
what the score and the other heard notes explain: Benetos et al. 2012, Ewert et al. 2016), such a peak is a
candidate extra key only where nothing else explains it:

* it comes with a heard strike of a neighbouring key (one or two semitones away, within 50 ms): a brushed
  key sounds with the key the finger meant (a peak an octave or a fifth from every key struck is the
  transcriber hearing a key whose partials those keys share);
* its key is not written there (a written note heard under the threshold is the missed-note check's case);
* its key was not struck in the 0.4 s before, nor is it still sounding: the key's own note re-heard as it
  decays or is released;
* it is not a partial of a note struck with it (an octave, a twelfth or a double octave above);
* it does not lie between two keys struck with it a semitone away on either side: there the two neighbours'
  bleed adds up on one key and their partials crowd its own, so neither its score nor the spectrum tells a
  brushed key from the cluster (on the benchmark's tuning pieces the only two such peaks were no strike: C4
  between B3 and C♯4 struck at 89 and 83, E4 between E♭4 and F4 in a forte chord);
* it is not a semitone neighbour's bleed: it stands above `FAINT_FLOOR`, over the bleed a struck key leaves on
  its neighbours (rendered chorales, three SoundFonts, room reverberation: at most -4.3 from C3 up; brushed keys
  -3.7 to 0), and it lies at C3 or above: lower, a semitone (under 8 Hz) is narrower than the transcriber's
  spectral bins (10.8 Hz: a 4096-sample window at 44.1 kHz), and a struck bass key's bleed reached -2.1.

Such a peak is a candidate only where the take's spectrum needs the key (`spectrum.explained_gain` at least
`metrics.FAINT_MIN_GAIN`): the transcriber's sub-threshold score alone did not separate brushed keys from
leaks (on the benchmark's 8 tuning pieces it found one more brushed key and added one false flag, a key a
semitone below a loud E3 in a forte chord scored -0.7; on the 8 held-out pieces it found nothing more and added
one). The verification (`verify.issue_features`) gives these candidates features of their own (the peak's score
and the spectrum's gain), so the confidence model weighs them apart from transcribed extra notes. `Analyzer`
makes them for every take (`report_from_notes(..., spectrum=OnsetSpectrum(audio, rate))`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llaqo_model.analysis.report import Note, struck_beside
from llaqo_model.analysis.transcribe import LOWEST_KEY, OnsetEvidence

FAINT_FLOOR = -4.0  # scores under this are background: a key not struck scores -5 to -11, a neighbour's bleed -4.3
PEAK_FRAMES = 2  # a peak is the highest score of its key within two frames (46 ms) either side
WITH_STRIKE_S = 0.05  # a brushed key sounds within 50 ms of the strike that brushed it
WRITTEN_REACH_S = 0.15  # a written key this close in time is a soft written note, not an extra one
OWN_NOTE_S = 0.4  # the key struck this shortly before is its own note re-heard (decay, release)
LOWEST_BRUSHED = 48  # C3: below it a struck key's evidence spreads onto its neighbours (see the module docstring)
PARTIALS = (12, 19, 24)  # 2nd, 3rd, 4th partials of a struck note: an octave, a twelfth, a double octave above


@dataclass(frozen=True)
class FaintStrike:
    """A key heard struck under the transcriber's threshold: MIDI pitch, time (s) and its onset score."""

    pitch: int
    time_s: float
    score: float


def faint_strikes(evidence: OnsetEvidence, notes: list[Note], written: list[tuple[int, float]]) -> list[FaintStrike]:
    """The sub-threshold peaks in `evidence` that no transcribed note in `notes` and no written note
    (`written`: pitch and expected time of each score note in the take) explains, in time order."""
    scores = evidence.scores
    if not notes or len(scores) == 0:
        return []
    padded = np.pad(scores, ((PEAK_FRAMES, PEAK_FRAMES), (0, 0)), mode="edge")
    highest = np.lib.stride_tricks.sliding_window_view(padded, 2 * PEAK_FRAMES + 1, axis=0).max(axis=-1)
    frames, keys = np.nonzero((scores >= highest) & (scores > FAINT_FLOOR))
    found: list[FaintStrike] = []
    for f, k in sorted(zip(frames.tolist(), keys.tolist(), strict=True), key=lambda fk: -scores[fk]):
        strike = FaintStrike(k + LOWEST_KEY, round(evidence.start_s + f * evidence.frame_s, 3), float(scores[f, k]))
        same_peak = any(
            s.pitch == strike.pitch and abs(s.time_s - strike.time_s) <= PEAK_FRAMES * evidence.frame_s for s in found
        )
        if not same_peak and _unexplained(strike, notes, written):
            found.append(strike)
    return sorted(found, key=lambda s: (s.time_s, s.pitch))


def _unexplained(strike: FaintStrike, notes: list[Note], written: list[tuple[int, float]]) -> bool:
    """Whether no heard or written note accounts for the peak (the rules in the module docstring)."""
    pitch, t = strike.pitch, strike.time_s
    if pitch < LOWEST_BRUSHED:
        return False
    struck = [n for n in notes if abs(n.onset - t) <= WITH_STRIKE_S]
    beside = struck_beside(pitch, t, struck, WITH_STRIKE_S)
    partial = any(pitch - n.pitch in PARTIALS for n in struck)
    between = {pitch - 1, pitch + 1} <= {n.pitch for n in struck}
    is_written = any(p == pitch and abs(w - t) <= WRITTEN_REACH_S for p, w in written)
    own_note = any(
        n.pitch == pitch and (t - OWN_NOTE_S <= n.onset <= t + WITH_STRIKE_S or n.onset <= t <= n.offset) for n in notes
    )
    return beside and not (partial or between or is_written or own_note)
