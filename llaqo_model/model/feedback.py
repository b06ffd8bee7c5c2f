"""Formative feedback for every take, composed from the model's ratings and the analysis's bar issues.

In the order a teacher gives them: what is good (the best-rated rubric dimensions), what to practise first
and where (the analysis's problems, the bars with the most weight first, at most three), how (one practice
method per problem), and the tempo when it is far from the one the score marks. A bar is named only for a
problem the analysis found in that bar, so nothing has to be withheld.
"""

from __future__ import annotations

from collections import defaultdict

from llaqo_model.analysis.report import NOT_FAULTS, NOTE_ERROR_KINDS, IssueKind, PerformanceReport

MAX_PRIORITIES = 3  # problems named as "first"; more overwhelms a student
GOOD_RATING = 5  # a rubric rating (1–6) from which a dimension is praised
NOTE_ERROR_WEIGHT = 1.5  # wrong/missed/extra notes come before expressive details

# issue kind → (what went wrong, how to practise it)
PRACTICE: dict[IssueKind, tuple[str, str]] = {
    IssueKind.WRONG_NOTE: ("wrong notes", "play the passage hands separately and slowly until every note is sure"),
    IssueKind.MISSED_NOTE: ("missed notes", "practise the passage slowly, checking every chord note sounds"),
    IssueKind.EXTRA_NOTE: ("extra notes", "slow down and prepare each hand position before you play it"),
    IssueKind.RUSHING: ("rushing", "practise with a metronome at a slower tempo, then raise it gradually"),
    IssueKind.DRAGGING: ("dragging", "count the beat aloud and keep the pulse going through the hard spot"),
    IssueKind.UNEVEN: ("uneven notes", "practise the run in dotted rhythms, then evenly, slowly"),
    IssueKind.DYNAMICS: ("dynamics that do not follow the score", "mark the dynamics and exaggerate them slowly"),
    IssueKind.BALANCE: ("unbalanced hands", "play the melody alone, then add the accompaniment much softer"),
    IssueKind.ARTICULATION: ("articulation unlike the score", "play slowly, listening for each note's length"),
    IssueKind.ASYNCHRONY: ("chord notes that do not sound together", "drop into each chord from the wrist, slowly"),
    IssueKind.PEDAL_BLUR: ("blurred pedalling", "change the pedal with each harmony, listening for a clean sound"),
    IssueKind.RESTART: ("a restart", "start just before the spot and play through it slowly without stopping"),
    IssueKind.UNCLEAR: ("an unclear passage", "play it slowly and listen closely to every note"),
}

# rubric key → what to practise when no bar carries the problem
GENERAL: dict[str, str] = {
    "pitch_accuracy": "check the notes against the score, slowly",
    "rhythm_accuracy": "count aloud while you play",
    "tempo_stability": "keep a steady pulse with a metronome",
    "tempo_choice": "choose a tempo you can keep through the hardest bars",
    "dynamic_range": "make the louds and softs further apart",
    "dynamic_shaping": "shape each phrase with a clear rise and fall",
    "articulation": "listen to how long each note lasts",
    "attack_cleanliness": "prepare each key before you press it",
    "evenness": "play runs slowly and evenly, then faster",
    "hand_balance": "bring the melody out above the accompaniment",
    "pedaling": "change the pedal with each harmony",
    "expressiveness": "let the music breathe at the ends of phrases",
}


TEMPO_GAP = 1.3  # played this much slower or faster than the score's mark: a tempo a teacher remarks on


def tempo_advice(report: PerformanceReport) -> str | None:
    """A sentence on the tempo when it is far from the one the score marks (None otherwise or unmarked)."""
    played, written = report.measures.tempo_bpm, report.measures.written_tempo_bpm
    if not played or not written or 1 / TEMPO_GAP <= played / written <= TEMPO_GAP:
        return None
    how = (
        "once the notes are sure, raise the tempo step by step with a metronome"
        if played < written
        else "take it nearer the marked tempo, so that every note has time to sound"
    )
    return f"The score marks about {written:.0f} beats a minute and you played about {played:.0f}: {how}."


def _bars(bars: list[int]) -> str:
    return f"bar {bars[0]}" if len(bars) == 1 else "bars " + ", ".join(map(str, bars[:-1])) + f" and {bars[-1]}"


def priorities(report: PerformanceReport) -> list[tuple[IssueKind, list[int]]]:
    """The analysis's problems as (kind, bars), heaviest first: at most MAX_PRIORITIES bars in all."""
    weight: dict[int, float] = defaultdict(float)
    kinds: dict[int, dict[IssueKind, float]] = defaultdict(lambda: defaultdict(float))
    for bar, issue in report.stated_issues():
        kind = IssueKind(issue.kind)
        if kind in NOT_FAULTS or kind not in PRACTICE:
            continue
        w = issue.severity * (NOTE_ERROR_WEIGHT if kind in NOTE_ERROR_KINDS else 1.0)
        weight[bar] += w
        kinds[bar][kind] += w
    top = sorted(weight, key=lambda b: (-weight[b], b))[:MAX_PRIORITIES]
    grouped: dict[IssueKind, list[int]] = {}
    for bar in top:
        kind = max(kinds[bar], key=lambda k: kinds[bar][k])
        grouped.setdefault(kind, []).append(bar)
    return [(kind, sorted(bars)) for kind, bars in grouped.items()]


def compose_feedback(report: PerformanceReport, ratings: dict[str, int]) -> str:
    """What is good, what to practise first and where, and how — consistent with `ratings` and the analysis."""
    ranked = sorted(ratings, key=lambda k: -ratings[k])
    good = [k for k in ranked if ratings[k] >= GOOD_RATING][:2]
    sentences = []
    if good:
        sentences.append("What is good: " + " and ".join(k.replace("_", " ") for k in good) + ".")
    found = priorities(report)
    for i, (kind, bars) in enumerate(found):
        problem, how = PRACTICE[kind]
        lead = "First" if i == 0 else "Then"
        sentences.append(f"{lead}, practise the {problem} in {_bars(bars)}: {how}.")
    if not found and ranked:
        weakest = ranked[-1]
        sentences.append(f"To practise first: {weakest.replace('_', ' ')} — {GENERAL[weakest]}.")
    tempo = tempo_advice(report)
    if tempo:
        sentences.append(tempo)
    return " ".join(sentences)
