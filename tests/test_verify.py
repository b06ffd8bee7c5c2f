"""Every candidate mistake is checked against the audio: real ones are stated with a high confidence, a note
played softly is not called missed, a key brushed too softly for the transcriber to output a note is still an
extra note, and the report states only what it is confident about."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from llaqo_model.analysis.pipeline import report_from_notes
from llaqo_model.analysis.report import (
    DEFAULT_MIN_CONFIDENCE,
    NOTE_ERROR_KINDS,
    Issue,
    IssueKind,
    Note,
    PerformanceReport,
)
from llaqo_model.analysis.score import load_score
from llaqo_model.analysis.spectrum import OnsetSpectrum
from llaqo_model.analysis.transcribe import LOWEST_KEY, OnsetEvidence
from llaqo_model.analysis.verify import confidence, issue_features
from llaqo_training.augment import apply_chain
from llaqo_training.examples import mechanical_performance, note_in_bar
from llaqo_training.render import render_notes

BPM = 100.0
SOFT = 26  # an inner voice played well under the chord around it (72)
BRUSHED = (60, 0.08)  # a key struck beside the tenor (chord at 72): velocity and seconds; the spectrum check needs
# about this on every SoundFont (at 40 only MuseScore General's piano gives it the partials the check asks for)
LOUD = 115  # chords struck loudly, whose partials are strongest
HALL = {
    "room": "hall",
    "rt60_s": 1.2,
    "wet": 0.35,
    "low_shelf_db": 0.0,
    "high_shelf_db": 3.0,
    "snr_db": 50.0,
    "gain_db": -3.0,
}


def _stated_errors(report: PerformanceReport) -> list[tuple[int, IssueKind]]:
    return [(bar, i.kind) for bar, i in report.stated_issues() if i.kind in NOTE_ERROR_KINDS]


@pytest.fixture(scope="module")
def played(chorale) -> dict:
    """The chorale with a wrong inner chord tone in bar 2, a soft inner note in bar 4, a loud extra key
    beside a chord in bar 7 and a note left out in bar 8."""
    notes = mechanical_performance(chorale, bpm=BPM)
    alto = note_in_bar(chorale, notes, 2, which=2, bpm=BPM)
    chord = {n.pitch for n in notes if n.onset == notes[alto].onset}
    wrong = next(notes[alto].pitch + d for d in (1, -1, 2, -2) if notes[alto].pitch + d not in chord)
    tenor = note_in_bar(chorale, notes, 4, which=1, bpm=BPM)
    left_out = notes[note_in_bar(chorale, notes, 8, which=1, bpm=BPM)]
    host = notes[note_in_bar(chorale, notes, 7, which=0, bpm=BPM)]
    beside = {n.pitch for n in notes if n.onset == host.onset}
    extra_pitch = next(host.pitch + d for d in (1, -1, 2, -2) if host.pitch + d not in beside)
    notes[alto] = replace(notes[alto], pitch=wrong)
    notes[tenor] = replace(notes[tenor], velocity=SOFT)
    notes = [n for n in notes if n is not left_out]
    notes.append(Note(host.onset + 0.004, host.offset, extra_pitch, host.velocity))
    return {
        "notes": sorted(notes, key=lambda n: (n.onset, n.pitch)),
        "wrong": wrong,
        "soft": notes[tenor].pitch,
        "extra": extra_pitch,
        "left_out": left_out.pitch,
    }


@pytest.fixture(scope="module")
def report(analyzer, chorale, played) -> PerformanceReport:
    return analyzer.analyze_samples(render_notes(played["notes"]), 44100, chorale, audio_name="take.wav")


def test_each_mistake_is_stated_once_in_its_bar_and_nothing_else(report):
    assert _stated_errors(report) == [(2, "wrong_note"), (7, "extra_note"), (8, "missed_note")]


def test_a_wrong_chord_tone_is_one_wrong_note_with_both_keys(report, played):
    bar2 = [i for bar, i in report.issues() if bar == 2 and i.kind in NOTE_ERROR_KINDS]
    assert len(bar2) == 1 and bar2[0].kind == "wrong_note"
    assert bar2[0].pitch == played["wrong"] and bar2[0].confidence >= report.min_confidence


def test_a_soft_inner_note_that_was_played_is_not_reported_missed(report, played):
    missed = [i for bar, i in report.issues() if bar == 4 and i.kind == "missed_note"]
    # either the transcriber heard it, or the audio check found it below its threshold and doubts the miss
    assert all(i.confidence < report.min_confidence for i in missed)
    assert 4 not in report.problem_bars()


def test_a_loud_extra_key_beside_a_chord_is_reported(report, played):
    extra = [i for bar, i in report.stated_issues() if bar == 7 and i.kind == "extra_note"]
    assert [i.pitch for i in extra] == [played["extra"]]


@pytest.fixture(scope="module")
def brushed(chorale) -> dict:
    """Bars 1-4 of the chorale played cleanly, and a key brushed softly beside the tenor of bar 3's first chord
    (a key not sounding around it) that the transcriber heard only under its threshold (its onset evidence: a
    peak at -1, the chord's keys clearly struck). Reports made from those notes and that evidence with the
    spectrum of the take with the brushed key, with the spectrum of the take without it, and with no spectrum."""
    passage = chorale.bar_range(1, 4)
    notes = mechanical_performance(passage, bpm=BPM)
    first = notes[note_in_bar(passage, notes, 3, which=0, bpm=BPM)]
    tenor = sorted((n for n in notes if n.onset == first.onset), key=lambda n: n.pitch)[1]
    near = {n.pitch for n in notes if abs(n.onset - tenor.onset) < 0.5 or n.onset <= tenor.onset < n.offset}
    key = next(tenor.pitch + d for d in (-1, -2, 1, 2) if tenor.pitch + d not in near)
    velocity, held_s = BRUSHED
    brush = Note(tenor.onset + 0.01, tenor.onset + 0.01 + held_s, key, velocity)
    frame_s = 0.02
    scores = np.full((round((notes[-1].offset + 1) / frame_s), 88), -9.0, dtype=np.float32)
    for n in notes:
        scores[round(n.onset / frame_s), n.pitch - LOWEST_KEY] = 6.0
    scores[round(brush.onset / frame_s), key - LOWEST_KEY] = -1.0
    evidence = OnsetEvidence(scores, frame_s)
    end = notes[-1].offset + 1

    def report(spectrum: OnsetSpectrum | None) -> PerformanceReport:
        return report_from_notes(notes, [], end, "take", passage, evidence, spectrum)

    with_brush = sorted([*notes, brush], key=lambda n: (n.onset, n.pitch))
    return {
        "key": key,
        "heard": report(OnsetSpectrum(render_notes(with_brush), 44100)),
        "not_struck": report(OnsetSpectrum(render_notes(notes), 44100)),
        "no_spectrum": report(None),
    }


def test_a_key_brushed_under_the_transcribers_threshold_is_an_extra_note_in_its_bar(brushed):
    assert _stated_errors(brushed["heard"]) == [(3, "extra_note")]
    assert [i.pitch for bar, i in brushed["heard"].stated_issues() if bar == 3] == [brushed["key"]]


def test_a_faint_peak_the_spectrum_does_not_need_is_no_extra_note(brushed):
    assert brushed["not_struck"].issues() == []  # the spectrum has none of the key's own partials there
    assert brushed["no_spectrum"].issues() == []  # without the audio such peaks are not candidates at all


def test_a_full_strength_extra_key_is_surer_than_a_brushed_one(report, played, brushed):
    loud = next(i for bar, i in report.issues() if bar == 7 and i.kind == "extra_note")
    soft = next(i for bar, i in brushed["heard"].issues() if bar == 3 and i.kind == "extra_note")
    assert loud.pitch == played["extra"] and soft.pitch == brushed["key"]
    assert loud.confidence > soft.confidence


def test_loud_chords_in_a_hall_give_no_extra_note_from_their_partials(analyzer, chorale):
    """Chords struck loudly in a reverberant hall: Transkun hears their partials (an octave, a twelfth above) only
    faintly; none of it is an extra note, stated or not (the partial rule itself: test_faint.py)."""
    passage = chorale.bar_range(1, 4)
    notes = mechanical_performance(passage, bpm=BPM, velocity=LOUD)
    audio = apply_chain(render_notes(notes), 44100, HALL, np.random.default_rng(0))
    heard = analyzer.transcriber.transcribe_with_evidence(audio)
    spectrum = OnsetSpectrum(audio, 44100)
    report = report_from_notes(heard.notes, heard.pedal, len(audio) / 44100, "take", passage, heard.evidence, spectrum)
    assert report.notes and [(bar, i.kind) for bar, i in report.issues() if i.kind in NOTE_ERROR_KINDS] == []


def test_confidences_are_probabilities_and_a_clear_mistake_outranks_a_doubtful_one(report):
    confidences = [i.confidence for _, i in report.issues()]
    assert confidences and all(0.0 <= c <= 1.0 for c in confidences)
    clear = next(i for _, i in report.issues() if i.kind == "missed_note" and i.confidence >= report.min_confidence)
    doubtful = [i for _, i in report.issues() if i.kind in NOTE_ERROR_KINDS and i.confidence < report.min_confidence]
    assert all(clear.confidence > i.confidence for i in doubtful)


def test_evidence_decides_a_missed_notes_confidence():
    """The same candidate 'missed E4' is sure when the key was not heard at all, doubtful when it was heard
    just under the transcriber's threshold, and unlikely when it was heard clearly."""
    scores = np.full((100, 88), -11.0, dtype=np.float32)
    evidence = OnsetEvidence(scores=scores, frame_s=0.02)
    issue = Issue(IssueKind.MISSED_NOTE, "bar 1: the E4 on beat 1 was not played", 1.0, expected_pitch=64)
    not_heard = confidence(issue.kind, issue_features(issue, evidence, []))
    scores[50, 64 - LOWEST_KEY] = -1.0
    under_threshold = confidence(issue.kind, issue_features(issue, evidence, []))
    scores[50, 64 - LOWEST_KEY] = 6.0
    heard = confidence(issue.kind, issue_features(issue, evidence, []))
    assert 1.0 >= not_heard > under_threshold > heard >= 0.0
    assert not_heard >= DEFAULT_MIN_CONFIDENCE > under_threshold  # stated only when the key was not heard


def test_json_keeps_doubtful_issues_and_the_threshold_decides_what_is_stated(report):
    again = PerformanceReport.from_json(report.to_json())
    assert [i.confidence for _, i in again.issues()] == [i.confidence for _, i in report.issues()]
    again.min_confidence = 0.0
    assert len(again.stated_issues()) == len(again.issues())
    again.min_confidence = 1.01
    assert again.stated_issues() == [] and again.problem_bars() == []


@pytest.fixture(scope="module")
def trill_score(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four bars of quarter notes over held bass notes, a trill written on the first note of bar 2."""
    import music21

    upper, lower = music21.stream.Part(), music21.stream.Part()
    for bar, names in enumerate((["C5", "D5", "E5", "C5"], ["E5", "D5", "C5", "G4"], ["A4", "B4", "C5", "D5"])):
        m = music21.stream.Measure(number=bar + 1)
        for name in names:
            n = music21.note.Note(name, quarterLength=1)
            if bar == 1 and name == "E5" and not m.notes:
                n.expressions.append(music21.expressions.Trill())
            m.append(n)
        upper.append(m)
        low = music21.stream.Measure(number=bar + 1)
        low.append(music21.note.Note(("C3", "G2", "F2")[bar], quarterLength=4))
        lower.append(low)
    upper.measure(1).insert(0, music21.meter.TimeSignature("4/4"))
    lower.measure(1).insert(0, music21.meter.TimeSignature("4/4"))
    path = tmp_path_factory.mktemp("trill") / "trill.musicxml"
    music21.stream.Score([upper, lower]).write("musicxml", fp=str(path))
    return path


def test_a_written_trill_played_as_written_is_not_extra_notes(analyzer, trill_score):
    score = load_score(trill_score)
    assert score.note_array["ornamented"].sum() == 1
    notes = mechanical_performance(score, bpm=BPM)
    trilled = notes[note_in_bar(score, notes, 2, which=1, bpm=BPM)]
    assert trilled.pitch == 76
    step = 0.075
    count = int((trilled.offset - trilled.onset) / step)
    notes = [n for n in notes if n is not trilled] + [
        Note(trilled.onset + k * step, trilled.onset + (k + 1) * step, 77 if k % 2 else 76, trilled.velocity)
        for k in range(count)
    ]
    notes.sort(key=lambda n: (n.onset, n.pitch))
    from_midi = report_from_notes(notes, [], notes[-1].offset + 1, "midi", score)
    from_audio = analyzer.analyze_samples(render_notes(notes), 44100, score)
    for report in (from_midi, from_audio):
        assert _stated_errors(report) == []
        assert report.problem_bars() == []


def test_a_key_struck_with_its_neighbour_beside_a_written_trill_is_an_extra_note(trill_score):
    """The trill's own notes follow each other; a key struck together with the next note, a semitone from
    both it and the trilled note, is a slip beside the ornament, not part of it."""
    score = load_score(trill_score)
    notes = mechanical_performance(score, bpm=BPM)
    next_note = notes[note_in_bar(score, notes, 2, which=2, bpm=BPM)]
    assert next_note.pitch == 74  # D5, a beat after the trilled E5
    notes.append(replace(next_note, onset=next_note.onset + 0.01, pitch=75))
    notes.sort(key=lambda n: (n.onset, n.pitch))
    report = report_from_notes(notes, [], notes[-1].offset + 1, "midi", score)
    assert _stated_errors(report) == [(2, IssueKind.EXTRA_NOTE)]
