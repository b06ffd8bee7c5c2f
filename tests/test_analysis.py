"""A take in, a bar-level report out: mistakes land in the right bar with the right kind."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from llaqo_model.analysis.pipeline import report_from_notes
from llaqo_model.analysis.report import NOTE_ERROR_KINDS, IssueKind, Note, PerformanceReport
from llaqo_training.examples import mechanical_performance, note_in_bar, performed_note
from llaqo_training.render import render_notes

BPM = 100.0


def _errors(report: PerformanceReport) -> list[tuple[int, str]]:
    return [(bar, issue.kind) for bar, issue in report.stated_issues() if issue.kind in NOTE_ERROR_KINDS]


@pytest.fixture(scope="module")
def clean_notes(chorale) -> list[Note]:
    return mechanical_performance(chorale, bpm=BPM)


@pytest.fixture(scope="module")
def wrong_in_bar_3(chorale, clean_notes):
    notes = list(clean_notes)
    i = note_in_bar(chorale, notes, 3, bpm=BPM)
    notes[i] = replace(notes[i], pitch=notes[i].pitch + 1)
    return notes, clean_notes[i].pitch


@pytest.fixture(scope="module")
def wrong_take_report(analyzer, chorale, wrong_in_bar_3) -> PerformanceReport:
    notes, _ = wrong_in_bar_3
    return analyzer.analyze_samples(render_notes(notes), 44100, chorale, audio_name="wrong.wav")


def test_wrong_note_in_bar_3_is_reported_in_bar_3_from_audio(wrong_take_report, wrong_in_bar_3):
    _, written = wrong_in_bar_3
    assert _errors(wrong_take_report) == [(3, IssueKind.WRONG_NOTE)]
    issue = wrong_take_report.issues()[0][1]
    assert issue.expected_pitch == written and issue.pitch == written + 1
    assert issue.detail.startswith("bar 3: played ") and "where the score has" in issue.detail
    bar3 = next(b for b in wrong_take_report.bars if b.bar == 3)
    assert bar3.start_s - 0.05 <= issue.time_s < bar3.end_s


def test_clean_take_reports_no_note_errors(analyzer, chorale, clean_notes):
    report = analyzer.analyze_samples(render_notes(clean_notes), 44100, chorale)
    assert _errors(report) == []
    assert report.alignment.coverage > 0.95 and report.alignment.matches_score
    assert [b.bar for b in report.bars] == list(range(0, 10))
    tempi = [b.tempo_bpm for b in report.bars if b.tempo_bpm]
    assert abs(np.median(tempi) - BPM) < 5


def test_stereo_take_at_another_rate_gives_the_same_mistake(analyzer, chorale, wrong_in_bar_3):
    import soxr

    notes, _ = wrong_in_bar_3
    mono = render_notes(notes, sample_rate=44100)
    stereo = np.stack([mono, 0.8 * mono], axis=1)
    report = analyzer.analyze_samples(soxr.resample(stereo, 44100, 22050), 22050, chorale)
    assert _errors(report) == [(3, IssueKind.WRONG_NOTE)]


def test_missed_and_extra_notes_are_located(chorale, clean_notes):
    notes = list(clean_notes)
    missed = notes.pop(note_in_bar(chorale, notes, 5, which=2, bpm=BPM))
    host = notes[note_in_bar(chorale, notes, 7, which=0, bpm=BPM)]
    notes.append(Note(host.onset + 0.3, host.onset + 0.5, 96, 80))
    notes.sort(key=lambda n: n.onset)
    report = report_from_notes(notes, [], notes[-1].offset + 1, "t", chorale)
    assert sorted(_errors(report)) == [(5, IssueKind.MISSED_NOTE), (7, IssueKind.EXTRA_NOTE)]
    missed_issue = next(i for _, i in report.issues() if i.kind == IssueKind.MISSED_NOTE)
    assert missed_issue.expected_pitch == missed.pitch
    assert "was not played" in missed_issue.detail


def test_restart_in_bar_4_is_one_restart_not_a_list_of_extra_notes(chorale, clean_notes):
    """The player breaks off in the middle of bar 4, pauses, and plays bar 4 again from its start."""
    bar4 = [n for i, n in enumerate(clean_notes) if i >= note_in_bar(chorale, clean_notes, 4, bpm=BPM)]
    bar5_start = clean_notes[note_in_bar(chorale, clean_notes, 5, bpm=BPM)].onset
    start = bar4[0].onset
    stop = start + (bar5_start - start) / 2
    attempt = [replace(n, offset=min(n.offset, stop)) for n in bar4 if n.onset < stop - 1e-3]
    shift = stop - start + 1.0  # a second's pause, then bar 4 again
    notes = [n for n in clean_notes if n.onset < start] + attempt
    notes += [replace(n, onset=n.onset + shift, offset=n.offset + shift) for n in clean_notes if n.onset >= start]
    report = report_from_notes(notes, [], notes[-1].offset + 1, "t", chorale)
    assert len(attempt) >= 4
    assert report.bars_with(IssueKind.RESTART) == [4]
    assert _errors(report) == []
    restart = next(i for _, i in report.issues() if i.kind == IssueKind.RESTART)
    assert abs(restart.time_s - (start + shift)) < 0.05 and "started again" in restart.detail
    assert report.alignment.restarts == 1 and report.alignment.extra == 0


def test_clean_take_has_no_restart(chorale, clean_notes):
    report = report_from_notes(clean_notes, [], clean_notes[-1].offset + 1, "t", chorale)
    assert report.bars_with(IssueKind.RESTART) == [] and report.alignment.restarts == 0


def test_rushed_bar_is_flagged_as_rushing(chorale, clean_notes):
    bar6 = next(r for r in chorale.bars if r["bar"] == 6)
    beat_s = 60 / BPM
    t0 = 0.5 + (bar6["start_beat"] - chorale.note_array["onset_beat"].min()) * beat_s
    t1 = t0 + (bar6["end_beat"] - bar6["start_beat"]) * beat_s
    squeeze = 0.6  # bar 6 played in 60% of its time

    def warp(t: float) -> float:
        if t <= t0:
            return t
        if t <= t1:
            return t0 + (t - t0) * squeeze
        return t - (t1 - t0) * (1 - squeeze)

    notes = [replace(n, onset=warp(n.onset), offset=max(warp(n.offset), warp(n.onset) + 0.05)) for n in clean_notes]
    report = report_from_notes(notes, [], notes[-1].offset + 1, "t", chorale)
    assert report.bars_with(IssueKind.RUSHING) == [6]
    assert _errors(report) == []


def test_take_of_another_piece_is_reported_as_not_matching(analyzer, other_piece_path, clean_notes):
    report = analyzer.analyze_samples(render_notes(clean_notes), 44100, other_piece_path)
    assert report.alignment is not None and not report.alignment.matches_score
    assert report.bars == [] and report.issues() == []
    assert any("does not match the score" in w for w in report.warnings)


def test_score_free_report_says_what_was_measured(wrong_take_report, clean_notes):
    report = report_from_notes(clean_notes, [], clean_notes[-1].offset + 1, "t", None)
    assert report.alignment is None and report.bars == []
    assert {"tempo", "dynamics", "articulation", "asynchrony"} <= set(report.available_measures)
    assert "score" not in report.available_measures
    assert "score" in wrong_take_report.available_measures
    assert abs(report.measures.ioi_tempo_bpm - 2 * BPM) < 10 or abs(report.measures.ioi_tempo_bpm - BPM) < 5


def test_json_contract_keys_and_round_trip(wrong_take_report):
    data = wrong_take_report.to_dict()
    assert {"audio", "score", "duration_s", "notes", "pedal", "alignment", "bars", "measures"} <= set(data)
    assert set(data["notes"][0]) >= {"onset", "offset", "pitch", "velocity"}
    assert set(data["alignment"]) >= {"coverage", "matched", "missed", "extra", "wrong"}
    bar = data["bars"][0]
    assert set(bar) >= {"bar", "start_s", "end_s", "tempo_bpm", "issues"}
    issue = next(i for b in data["bars"] for i in b["issues"])
    assert set(issue) >= {"kind", "detail", "time_s"}
    again = PerformanceReport.from_json(wrong_take_report.to_json())
    assert again.to_dict() == data


def test_midi_score_gives_the_same_bars(tmp_path, chorale, wrong_in_bar_3):
    import music21

    from llaqo_model.analysis.score import load_score

    midi = tmp_path / "chorale.mid"
    music21.corpus.parse("bach/bwv66.6").write("midi", fp=str(midi))
    score = load_score(midi)
    notes, _ = wrong_in_bar_3
    report = report_from_notes(notes, [], notes[-1].offset + 1, "t", score)
    assert [k for _, k in _errors(report)] == [IssueKind.WRONG_NOTE]
    assert report.alignment.matches_score


def test_prompt_text_names_the_bar(wrong_take_report):
    assert "bar 3: wrong_note" in wrong_take_report.to_prompt_text()


def test_a_bar_too_messy_to_list_still_names_slips_onto_a_neighbouring_key():
    from llaqo_model.analysis.metrics import _mark_unclear
    from llaqo_model.analysis.report import Bar, Issue

    played = [Note(1.0, 1.4, 64, 70), Note(1.01, 1.3, 65, 60), Note(1.5, 1.9, 67, 70)]
    bar = Bar(bar=12, start_s=1.0, end_s=3.0, notes_expected=8)
    bar.issues = [
        Issue(IssueKind.WRONG_NOTE, "bar 12: played E♭4 where the score has E4", 1.5, pitch=63, expected_pitch=64),
        Issue(IssueKind.WRONG_NOTE, "bar 12: played C5 where the score has G4", 1.6, pitch=72, expected_pitch=67),
        Issue(IssueKind.MISSED_NOTE, "bar 12: the B4 on beat 2 was not played", 2.0, expected_pitch=71),
        Issue(IssueKind.EXTRA_NOTE, "bar 12: an extra F4 was played", 1.01, pitch=65),
        Issue(IssueKind.EXTRA_NOTE, "bar 12: an extra C6 was played", 2.5, pitch=84),
        Issue(IssueKind.RUSHING, "bar 12: rushed", 1.0),
    ]
    _mark_unclear(bar, played)
    kept = [(i.kind, i.pitch) for i in bar.issues]
    # a semitone off; a brushed neighbour
    assert (IssueKind.WRONG_NOTE, 63) in kept and (IssueKind.EXTRA_NOTE, 65) in kept
    assert (IssueKind.WRONG_NOTE, 72) not in kept and (IssueKind.EXTRA_NOTE, 84) not in kept  # could be misalignment
    assert not any(k == IssueKind.MISSED_NOTE for k, _ in kept)
    assert (IssueKind.RUSHING, None) in kept
    unclear = [i for i in bar.issues if i.kind == IssueKind.UNCLEAR]
    assert len(unclear) == 1 and "5 of 8" in unclear[0].detail


def test_an_octave_overtone_heard_as_a_note_is_not_an_extra_note(chorale, clean_notes):
    notes = list(clean_notes)
    host = notes[note_in_bar(chorale, notes, 5, which=0, bpm=BPM)]
    other = notes[note_in_bar(chorale, notes, 7, which=0, bpm=BPM)]
    notes.append(Note(host.onset + 0.005, host.offset, host.pitch + 12, host.velocity - 8))  # its second partial
    notes.append(Note(other.onset + 0.005, other.offset, other.pitch + 13, other.velocity - 8))  # a real slip
    notes.sort(key=lambda n: n.onset)
    report = report_from_notes(notes, [], notes[-1].offset + 1, "t", chorale)
    assert _errors(report) == [(7, IssueKind.EXTRA_NOTE)]




def test_an_overtone_read_a_little_louder_than_its_note_is_still_an_overtone(chorale, clean_notes):
    notes = [replace(n, velocity=70) for n in clean_notes]
    host = notes[note_in_bar(chorale, notes, 5, which=0, bpm=BPM)]
    other = notes[note_in_bar(chorale, notes, 7, which=0, bpm=BPM)]
    notes.append(Note(host.onset + 0.003, host.offset, host.pitch + 12, host.velocity + 3))  # as Transkun reads it
    notes.append(Note(other.onset + 0.003, other.offset, other.pitch + 12, other.velocity + 20))  # an octave struck
    notes.sort(key=lambda n: n.onset)
    report = report_from_notes(notes, [], notes[-1].offset + 1, "t", chorale)
    assert _errors(report) == [(7, IssueKind.EXTRA_NOTE)]
def _bounced(notes: list[Note], i: int, gap_s: float, velocity: int) -> list[Note]:
    """Note `i` struck, released after `gap_s` and struck again on the same key (a bounce for one written note)."""
    n = notes[i]
    notes = list(notes)
    notes[i] = replace(n, offset=n.onset + gap_s - 0.01)
    notes.append(Note(n.onset + gap_s, n.offset, n.pitch, velocity))
    return sorted(notes, key=lambda m: (m.onset, m.pitch))


def test_a_written_note_struck_twice_in_quick_succession_is_not_an_extra_note(chorale, clean_notes):
    host = note_in_bar(chorale, clean_notes, 5, which=0, bpm=BPM)
    bounced = _bounced(clean_notes, host, 0.12, clean_notes[host].velocity)  # as loud as the note itself
    assert _errors(report_from_notes(bounced, [], bounced[-1].offset + 1, "t", chorale)) == []
    # the same key struck again half a second later, where the score has no note, is an extra note
    later = _bounced(clean_notes, host, 0.5, clean_notes[host].velocity)
    assert _errors(report_from_notes(later, [], later[-1].offset + 1, "t", chorale)) == [(5, IssueKind.EXTRA_NOTE)]


def test_a_bounce_heard_in_the_audio_is_not_an_extra_note(analyzer, chorale, clean_notes):
    bounced = _bounced(clean_notes, note_in_bar(chorale, clean_notes, 5, which=1, bpm=BPM), 0.09, 45)
    report = analyzer.analyze_samples(render_notes(bounced), 44100, chorale, audio_name="bounce.wav")
    assert _errors(report) == []


def test_an_added_trill_is_named_as_an_ornament_not_as_extra_notes(chorale, clean_notes):
    notes = list(clean_notes)
    host = notes[note_in_bar(chorale, notes, 5, which=0, bpm=BPM)]
    for k in range(1, 6):  # upper neighbour and main note in turn, 70 ms apart
        pitch = host.pitch + 2 if k % 2 else host.pitch
        notes.append(Note(host.onset + 0.07 * k, host.onset + 0.07 * k + 0.06, pitch, host.velocity))
    notes.sort(key=lambda n: n.onset)
    report = report_from_notes(notes, [], notes[-1].offset + 1, "t", chorale)
    assert _errors(report) == []
    assert report.alignment.extra == 0 and report.alignment.ornaments == 1
    ornaments = [(bar, i) for bar, i in report.issues() if i.kind == IssueKind.ORNAMENT]
    assert [bar for bar, _ in ornaments] == [5] and ornaments[0][1].pitch == host.pitch
    assert "added a trill" in ornaments[0][1].detail


def test_a_trill_heard_in_the_audio_is_one_ornament_and_not_a_restart(analyzer, chorale):
    notes = mechanical_performance(chorale)
    first = notes[note_in_bar(chorale, notes, 4)]
    top = max((n for n in notes if n.onset == first.onset), key=lambda n: n.pitch)
    for k in range(1, 6):  # its upper neighbour and itself in turn, 80 ms apart
        pitch = top.pitch + 2 if k % 2 else top.pitch
        notes.append(Note(top.onset + 0.08 * k, top.onset + 0.08 * k + 0.07, pitch, top.velocity))
    report = analyzer.analyze_samples(render_notes(sorted(notes, key=lambda n: n.onset)), 44100, chorale)
    named = {IssueKind.ORNAMENT, IssueKind.RESTART, *NOTE_ERROR_KINDS}
    assert [(bar, i.kind) for bar, i in report.stated_issues() if i.kind in named] == [(4, IssueKind.ORNAMENT)]


def _asap_excerpt(folder, performance: str, first_bar: int, last_bar: int):
    """Score bars `first_bar`..`last_bar` of an ASAP piece and what the expert played in them (notes, pedal, end s)."""
    from llaqo_model.analysis.score import load_score
    from llaqo_model.io import read_performance_midi

    lines = (folder / f"{performance}_annotations.txt").read_text().splitlines()
    downbeats = [float(line.split("\t")[0]) for line in lines if line.split("\t")[2].startswith("db")]
    score = load_score(folder / "xml_score.mxl").bar_range(first_bar, last_bar)
    notes, pedal = read_performance_midi(folder / f"{performance}.mid")
    start, end = downbeats[first_bar - 1] - 0.08, downbeats[last_bar] - 0.08  # bar 1 is the first downbeat
    return score, [n for n in notes if start <= n.onset < end], pedal, end


def _added_note_errors(clean: PerformanceReport, take: PerformanceReport) -> set[tuple[int, str, int | None]]:
    """(bar, kind, written key) of the note errors stated on `take` and not on `clean`."""
    before = {(bar, i.kind, i.pitch, i.expected_pitch) for bar, i in clean.stated_issues()}
    return {
        (bar, i.kind, i.expected_pitch)
        for bar, i in take.stated_issues()
        if i.kind in NOTE_ERROR_KINDS and (bar, i.kind, i.pitch, i.expected_pitch) not in before
    }


def test_a_chord_tone_left_out_is_missed_in_its_bar_not_paired_with_the_same_key_a_second_later(shared_dir):
    """Bach's Prelude BWV 874 played by an expert (ASAP), bars 3–10, with the last G4 of bar 4 (struck with A2
    and E5) left out: the G4 in bar 4 was not played, and nothing else changes (the matcher paired it with a G4
    played over a second later, which left a "missed F♯4" in bar 5 instead)."""
    from llaqo_model.analysis.align import align_to_score

    score, notes, pedal, end = _asap_excerpt(
        shared_dir / "data" / "asap" / "Bach" / "Prelude" / "bwv_874", "BianF01M", 3, 10
    )
    na = score.note_array
    chord_g4 = max(
        (s for s in range(len(na)) if na["bar"][s] == 4 and na["pitch"][s] == 67),
        key=lambda s: na["onset_beat"][s],
    )
    played = dict(align_to_score(score, notes).matched)[chord_g4]
    clean = report_from_notes(notes, pedal, end, "clean", score)
    take = [n for i, n in enumerate(notes) if i != played]
    report = report_from_notes(take, pedal, end, "take", score)
    assert _added_note_errors(clean, report) == {(4, IssueKind.MISSED_NOTE, 67)}


def test_a_repeated_note_left_out_under_the_pedal_is_still_a_missed_note(chorale):
    """The second of two repeated notes skipped while the pedal holds the first: the key keeps sounding, but
    the written re-strike was not played, and the report says so in its bar."""
    from llaqo_model.analysis.report import PedalInterval

    bpm = 120.0
    notes = mechanical_performance(chorale, bpm=bpm)
    beat_s = 60.0 / bpm
    bar, i = next(
        (bar, i)
        for bar in range(1, 10)
        for i in [note_in_bar(chorale, notes, bar, which=which, bpm=bpm) for which in range(8)]
        if any(m.pitch == notes[i].pitch and 0 < notes[i].onset - m.onset <= beat_s for m in notes)
    )
    take = notes[:i] + notes[i + 1 :]
    report = report_from_notes(take, [PedalInterval(0.0, take[-1].offset)], take[-1].offset + 1, "t", chorale)
    assert _errors(report) == [(bar, IssueKind.MISSED_NOTE)]
    missed = next(issue for _, issue in report.stated_issues() if issue.kind == IssueKind.MISSED_NOTE)
    assert missed.expected_pitch == notes[i].pitch and abs(missed.time_s - notes[i].onset) < 0.05


def test_an_extra_key_a_beat_after_a_grace_note_is_reported_not_taken_for_the_grace_note(tmp_path):
    """A grace note is played just before its main note: a key a semitone from it struck a beat later is an
    extra note (a trill or turn may stretch over a second, a grace note does not)."""
    import music21

    from llaqo_model.analysis.score import load_score

    melody = music21.stream.Measure(number=1)
    melody.append(music21.note.Note("D5", quarterLength=0.5).getGrace())
    for name in ("C5", "E5", "F5", "G5"):
        melody.append(music21.note.Note(name, quarterLength=1.0))
    second = music21.stream.Measure(number=2)
    for name in ("A5", "G5", "F5", "E5"):
        second.append(music21.note.Note(name, quarterLength=1.0))
    part = music21.stream.Part([music21.meter.TimeSignature("4/4"), melody, second])
    path = tmp_path / "grace.musicxml"
    music21.stream.Score([part]).write("musicxml", fp=str(path))
    score = load_score(path)
    assert score.note_array["is_grace"].sum() == 1

    notes = mechanical_performance(score, bpm=BPM)
    main = notes[0]
    grace = Note(main.onset - 0.08, main.onset - 0.01, 74, main.velocity)
    played = [grace, *notes]
    assert _errors(report_from_notes(played, [], played[-1].offset + 1, "t", score)) == []
    beat_two = notes[1]
    slip = Note(beat_two.onset + 0.01, beat_two.offset, 73, main.velocity)
    take = sorted([*played, slip], key=lambda n: (n.onset, n.pitch))
    report = report_from_notes(take, [], take[-1].offset + 1, "t", score)
    assert _errors(report) == [(1, IssueKind.EXTRA_NOTE)]
    assert next(i for _, i in report.stated_issues() if i.kind == IssueKind.EXTRA_NOTE).pitch == 73


def test_a_repeated_chord_tone_left_out_is_reported_at_its_own_time_not_at_the_next_strike(shared_dir):
    """Mozart's Sonata K. 310 (ASAP, Bogdanovitch), bars 1–12, with one E4 of the left hand's repeated chords
    in bar 4 (played at 7.36 s) left out: the E4 struck next must not be taken for it, which would put the
    missed note at that next strike (7.58 s)."""
    score, notes, pedal, end = _asap_excerpt(
        shared_dir / "data" / "asap" / "Mozart" / "Piano_Sonatas" / "8-1", "Bogdanovitch01", 1, 12
    )
    left_out = next(i for i, n in enumerate(notes) if n.pitch == 64 and abs(n.onset - 7.36) < 0.02)
    clean = report_from_notes(notes, pedal, end, "clean", score)
    take = notes[:left_out] + notes[left_out + 1 :]
    report = report_from_notes(take, pedal, end, "take", score)
    assert _added_note_errors(clean, report) == {(4, IssueKind.MISSED_NOTE, 64)}
    missed = next(i for bar, i in report.stated_issues() if bar == 4 and i.kind == IssueKind.MISSED_NOTE)
    assert abs(missed.time_s - notes[left_out].onset) < 0.1


def test_a_key_taken_over_from_another_voice_and_left_out_is_a_missed_note(chorale, clean_notes):
    """The alto's E4 ends where the tenor's E4 begins: the pianist strikes the key again, so a take that
    leaves the tenor's note out has a missed note in its bar (only a note still held from another voice
    is played once)."""
    na = chorale.note_array
    ends = na["onset_beat"] + na["duration_beat"]
    s = next(
        s
        for s in range(len(na))
        if na["bar"][s] >= 1
        and any(
            na["pitch"][o] == na["pitch"][s]
            and abs(ends[o] - na["onset_beat"][s]) < 1e-6
            and (na["voice"][o], na["staff"][o]) != (na["voice"][s], na["staff"][s])
            for o in range(len(na))
        )
    )
    assert na["held_over"][s] == 0
    left_out = performed_note(chorale, clean_notes, s, bpm=BPM)
    take = clean_notes[:left_out] + clean_notes[left_out + 1 :]
    report = report_from_notes(take, [], take[-1].offset + 1, "t", chorale)
    assert _errors(report) == [(int(na["bar"][s]), IssueKind.MISSED_NOTE)]
