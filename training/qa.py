"""Instruction QA per take in the paper's style: rating questions answered with the number, open
questions answered in a teacher's voice from the take's real faults (bar numbers when a score is given),
difficulty, technique and composer questions. Train takes use the training phrasings; val/test takes
use held-out phrasings, so evaluation asks questions the model never saw worded that way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llaqo_model.analysis.report import RUBRIC_KEYS
from llaqo_training.faults import Fault

ASPECT = {
    "pitch_accuracy": ["the note accuracy", "the accuracy of the notes", "the correctness of the pitches"],
    "rhythm_accuracy": ["the rhythmic accuracy", "the accuracy of the rhythm", "the precision of the rhythm"],
    "tempo_stability": ["the consistency of the tempo", "the steadiness of the pulse", "the tempo stability"],
    "tempo_choice": ["the choice of tempo", "the suitability of the tempo", "the tempo selection"],
    "dynamic_range": ["the dynamic range", "the range of loud and soft", "the dynamic contrast"],
    "dynamic_shaping": [
        "the dynamic shaping of the phrases",
        "the use of crescendo and diminuendo",
        "the phrase shaping",
    ],
    "articulation": ["the articulation", "the legato and staccato playing", "the clarity of articulation"],
    "attack_cleanliness": ["the cleanliness of the attack", "the cleanness of the attacks", "the tone production"],
    "evenness": ["the evenness of the runs", "the evenness of the passagework", "the evenness of the fast notes"],
    "hand_balance": ["the balance between the hands", "the voicing of melody over accompaniment", "the hand balance"],
    "pedaling": ["the pedalling", "the use of the sustain pedal", "the clarity of the pedalling"],
    "expressiveness": ["the expressiveness", "the musical expression", "the expressive intent of the playing"],
}
RATING_TEMPLATES = [
    "How would you rate {a} on a scale of 1 to 6?",
    "On a scale of 1 to 6, how would you grade {a}?",
    "What score from 1 to 6 would you give {a}?",
    "Rate {a} from 1 (poor) to 6 (excellent).",
    "How good is {a}, on a 1-6 scale?",
]
OVERALL_Q = [
    "How would you rate the performance overall, on a scale of 1 to 6?",
    "What overall rating from 1 to 6 does this performance deserve?",
    "Give this performance an overall grade from 1 to 6.",
    "Overall, how would you score this playing on a scale of 6?",
]
DIFFICULTY_Q = [
    "How would you rate the difficulty of the piece on a scale of 9?",
    "Which difficulty level is the piece, in a scale of 9?",
    "On a scale from 1 to 9, how challenging is the piece in this recording?",
    "How hard is this piece to play, from 1 to 9?",
]
TECHNIQUE_Q = [
    "What's the most salient technique used in this recording?",
    "What is the primary piano technique used in this track?",
    "Which technique does this passage mainly demand?",
    "Which piano technique stands out most in this excerpt?",
]
COMPOSER_Q = [
    "Who might be the composer?",
    "What is the stylistic period of the piece? Who is the potential composer?",
    "Can you identify the composer of this piece?",
    "What kind of music is this and who wrote it?",
]
OPEN_Q = {
    "open:feedback": [
        "What's your overall feedback on this performance?",
        "How would you comment on this performance as a teacher?",
        "Give the student feedback on this take.",
        "What did you think of this performance?",
    ],
    "open:work_on": [
        "What does the student need to work on?",
        "What should the pianist practise next?",
        "Which aspects need the most improvement?",
        "What would you ask the student to fix first?",
    ],
    "open:attack": [
        "How clean is the attack?",
        "Are the chords and attacks played together and cleanly?",
        "How is the tone production in the attacks?",
        "Comment on the cleanliness of the attacks.",
    ],
    "open:dynamics": [
        "Is the dynamics change natural?",
        "How are the dynamics handled?",
        "Does the player shape the dynamics well?",
        "Comment on the loud and soft contrasts.",
    ],
    "open:emotion": [
        "Describe the emotional intent of this performance.",
        "What mood does the player convey?",
        "How would you describe the expressive character of this playing?",
        "What emotion comes across in this performance?",
    ],
    "open:tempo": [
        "How is the overall tempo?",
        "Is the tempo steady and well chosen?",
        "Comment on the pulse and the tempo.",
        "How well does the player keep time?",
    ],
    "open:notes": [
        "How is the note accuracy?",
        "Were there any wrong or missed notes?",
        "Did the student play the right notes?",
        "Comment on the accuracy of the notes.",
    ],
}
HELD_OUT = 1  # the last phrasing(s) of every list are kept for val/test takes
PERIOD_ERA = {"Baroque": "Baroque", "Classical": "Classical", "Romantic": "Romantic"}
PRACTICE = {
    "wrong_note": "slow, hands-separate practice of that passage until the notes are secure",
    "missed_note": "playing the passage slowly and saying each melody note aloud so none drops out",
    "extra_note": "a quieter, closer hand position so that neighbouring keys are not caught",
    "hesitation": "practising with a metronome from a bar before the stop, keeping going through it",
    "restart": "running through the passage without stopping, even after a slip",
    "inaccurate_rhythm": "counting aloud or subdividing with a metronome to place each note value",
    "rushing": "a metronome at a slower setting in the bars that run away",
    "dragging": "keeping the pulse moving in the bars that hold back; practise them in rhythms",
    "unsteady_tempo": "a metronome on the beat, then on the bar, to settle the pulse",
    "wrong_tempo": "choosing a tempo that suits the character of the piece",
    "flat_dynamics": "marking the dynamics in the score and exaggerating them in practice",
    "exaggerated_dynamics": "keeping contrasts within the style; fortes should stay round, not harsh",
    "ignored_hairpins": "shaping each phrase towards its high point and letting it fall away",
    "heavy_left_hand": "playing the left hand alone softly, then adding a singing right hand",
    "staccato_for_legato": "connecting the notes with finger legato before adding any pedal",
    "legato_for_staccato": "light, detached wrist staccato with clear releases",
    "chord_asynchrony": "dropping into the chords from the arm so all notes sound together",
    "smudged_attack": "striking from the key surface with firm fingertips",
    "uneven_runs": "practising the runs in dotted rhythms and with accents moved around",
    "pedal_blur": "changing the pedal with every change of harmony and listening to the bass",
    "no_pedal": "adding a legato pedal that changes with the harmony",
    "mechanical": "singing the phrase first and letting the timing breathe at its ends",
}
DIMENSION_OF = {
    "wrong_note": "pitch_accuracy",
    "missed_note": "pitch_accuracy",
    "extra_note": "pitch_accuracy",
    "hesitation": "rhythm_accuracy",
    "restart": "rhythm_accuracy",
    "inaccurate_rhythm": "rhythm_accuracy",
    "rushing": "tempo_stability",
    "dragging": "tempo_stability",
    "unsteady_tempo": "tempo_stability",
    "wrong_tempo": "tempo_choice",
    "flat_dynamics": "dynamic_range",
    "exaggerated_dynamics": "dynamic_range",
    "ignored_hairpins": "dynamic_shaping",
    "heavy_left_hand": "hand_balance",
    "staccato_for_legato": "articulation",
    "legato_for_staccato": "articulation",
    "chord_asynchrony": "attack_cleanliness",
    "smudged_attack": "attack_cleanliness",
    "uneven_runs": "evenness",
    "pedal_blur": "pedaling",
    "no_pedal": "pedaling",
    "mechanical": "expressiveness",
}


def _pick(options: list[str], rng: np.random.Generator, held_out: bool) -> str:
    pool = options[-HELD_OUT:] if held_out else options[:-HELD_OUT]
    return pool[int(rng.integers(len(pool)))]


def _bars(bars: list[int]) -> str:
    if len(bars) == 1:
        return f"bar {bars[0]}"
    if bars == list(range(bars[0], bars[-1] + 1)):
        return f"bars {bars[0]}–{bars[-1]}"
    return "bars " + ", ".join(str(b) for b in bars[:-1]) + f" and {bars[-1]}"


def describe(fault: Fault, with_bars: bool) -> str:
    """One teacher's sentence about a fault (where it is, when bar numbers mean something)."""
    d = fault.detail
    where = f" in {_bars(fault.bars)}" if with_bars else ""
    k = fault.kind
    if k == "wrong_note":
        played, expected = d.get("played", "a neighbouring key"), d.get("expected", "the written note")
        return f"a wrong note{where}: {played} instead of {expected}"
    if k == "missed_note":
        return f"a missing note{where} (the {d.get('expected', 'melody note')} was left out)"
    if k == "extra_note":
        kind = "an extra note" if fault.magnitude >= 1 else "a brushed neighbouring key"
        return f"{kind}{where} ({d.get('played', 'a stray key')})"
    if k == "hesitation":
        return f"a hesitation{where}, stopping for about {d.get('pause_s', 1):.1f} seconds"
    if k == "restart":
        return f"a restart{where}, breaking off and replaying the bar"
    if k == "rushing":
        return f"rushing{where}, where the tempo runs ahead"
    if k == "dragging":
        return f"dragging{where}, where the tempo holds back"
    if k == "unsteady_tempo":
        return "an unsteady pulse that changes from bar to bar"
    if k == "wrong_tempo":
        amount = "a little" if fault.magnitude < 0.35 else "clearly" if fault.magnitude < 0.7 else "much"
        return f"a tempo that is {amount} too {d.get('direction', 'slow')} for this music"
    if k == "flat_dynamics":
        return "dynamics that stay at one level, with little contrast"
    if k == "exaggerated_dynamics":
        return "overdone dynamic contrasts that sound harsh in the loud bars"
    if k == "ignored_hairpins":
        return "phrases left unshaped, without crescendo and diminuendo"
    if k == "heavy_left_hand":
        return "a heavy left hand that covers the melody"
    if k == "staccato_for_legato":
        return f"choppy, detached playing{where} where the line should be legato"
    if k == "legato_for_staccato":
        return f"smeared legato{where} where the notes should be short and detached"
    if k == "chord_asynchrony":
        return f"chords whose notes do not sound together{where if len(fault.bars) <= 3 else ''}"
    if k == "smudged_attack":
        return f"smudged attacks{where if len(fault.bars) <= 3 else ''}, catching neighbouring keys"
    if k == "uneven_runs":
        return f"uneven runs{where if len(fault.bars) <= 3 else ''}, with notes unequal in time and weight"
    if k == "pedal_blur":
        return f"a blurred pedal held through {_bars(fault.bars) if with_bars else 'several harmony changes'}"
    if k == "no_pedal":
        return "no pedal at all, so the sound is dry and disconnected"
    if k == "mechanical":
        return "a rather mechanical delivery with little rubato or phrasing"
    if k == "inaccurate_rhythm":
        return "note values that are not held or placed precisely"
    return k.replace("_", " ")


def _severity(faults: list[Fault]) -> list[Fault]:
    """Faults ordered from the most to the least serious (note errors and stops first)."""
    rank = {"wrong_note": 3, "missed_note": 3, "restart": 3, "hesitation": 2.5, "extra_note": 2}
    return sorted(faults, key=lambda f: -(rank.get(f.kind, 1.0) + f.magnitude))


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _group_notes(faults: list[Fault], with_bars: bool) -> list[str]:
    """Note errors merged per kind: 'wrong notes in bars 3 and 7'."""
    out = []
    for kind, word in (("wrong_note", "wrong note"), ("missed_note", "missing note"), ("extra_note", "extra note")):
        fs = [f for f in faults if f.kind == kind]
        if not fs:
            continue
        if len(fs) == 1:
            out.append(describe(fs[0], with_bars))
        else:
            bars = sorted({b for f in fs for b in f.bars})
            out.append(f"{len(fs)} {word}s" + (f" (in {_bars(bars)})" if with_bars else ""))
    return out


PRAISE = {
    6: ["This is a polished, convincing performance.", "Excellent playing: secure, musical and well controlled."],
    5: ["A very good performance with only small blemishes.", "Good, confident playing; a few details to refine."],
    4: ["A solid performance with some clear issues to work on.", "Decent playing, but several things need attention."],
    3: [
        "The performance holds together, but there are significant problems.",
        "A fair attempt with a number of real problems.",
    ],
    2: ["The performance has many problems that get in the way of the music.", "This take is not yet secure."],
    1: ["The piece is not yet under control; it needs slow, careful work.", "This take breaks down in many places."],
}


def feedback_answer(faults: list[Fault], overall: int, with_bars: bool, rng: np.random.Generator) -> str:
    """Overall feedback: a verdict matching the overall rating, then the main problems."""
    verdict = PRAISE[overall][int(rng.integers(2))]
    if not faults:
        return verdict + " Keep this level of control and listening."
    parts = _group_notes(faults, with_bars) + [
        describe(f, with_bars) for f in _severity(faults) if f.kind not in ("wrong_note", "missed_note", "extra_note")
    ]
    lead = ["The main issues are", "I noticed", "What held it back:"][int(rng.integers(3))]
    return f"{verdict} {lead} {_join(parts[:4])}."


def work_on_answer(faults: list[Fault], ratings: dict[str, int], with_bars: bool, rng: np.random.Generator) -> str:
    """What to practise: the weakest dimensions' faults with a practice suggestion each."""
    if not faults:
        return "Nothing major: keep refining tone colour and phrasing, and keep the pieces in the fingers."
    ordered = sorted(_severity(faults), key=lambda f: ratings.get(DIMENSION_OF.get(f.kind, ""), 6))
    seen: set[str] = set()
    lines = []
    for f in ordered:
        if f.kind in seen:
            continue
        seen.add(f.kind)
        lines.append(f"{describe(f, with_bars)} — try {PRACTICE.get(f.kind, 'slow practice')}")
        if len(lines) == 3:
            break
    opener = ["First, work on", "The priorities are", "I would focus on"][int(rng.integers(3))]
    return f"{opener}: " + "; ".join(lines) + "."


def attack_answer(faults: list[Fault], rating: int, with_bars: bool) -> str:
    """How clean the attack is, consistent with the attack_cleanliness rating."""
    kinds = ("chord_asynchrony", "smudged_attack")
    fs = [f for f in faults if f.kind in kinds or (f.kind == "extra_note" and f.magnitude < 1)]
    if rating == 6:
        return "The attacks are clean and the chord notes sound together."
    if not fs:
        return "The attacks are mostly clean."
    quality = {5: "mostly clean, with", 4: "somewhat untidy:", 3: "often untidy:", 2: "messy:", 1: "very messy:"}[
        rating
    ]
    return f"The attack is {quality} {_join([describe(f, with_bars) for f in fs])}."


def dynamics_answer(faults: list[Fault], ratings: dict[str, int], with_bars: bool) -> str:
    """Whether the dynamics change is natural, from the dynamic ratings and faults."""
    fs = [
        f for f in faults if f.kind in ("flat_dynamics", "exaggerated_dynamics", "ignored_hairpins", "heavy_left_hand")
    ]
    worst = min(ratings["dynamic_range"], ratings["dynamic_shaping"])
    if worst == 6 and not fs:
        return "Yes, the dynamics change naturally and follow the shape of the phrases."
    if not fs:
        return "Mostly natural, with small inconsistencies."
    judgement = "Not quite" if worst >= 4 else "No"
    return f"{judgement}: there are {_join([describe(f, with_bars) for f in fs])}."


def emotion_answer(take_info: dict[str, Any], faults: list[Fault], ratings: dict[str, int]) -> str:
    """The expressive character, from tempo, loudness and the expressiveness rating."""
    tempo = take_info.get("tempo_bpm") or 90.0
    loud = take_info.get("velocity_mean") or 64.0
    pace = "lively and energetic" if tempo > 110 else "calm and lyrical" if tempo < 70 else "flowing"
    weight = "bold" if loud > 80 else "gentle" if loud < 50 else "warm"
    r = ratings["expressiveness"]
    if r >= 5:
        return f"The playing sounds {pace}, with a {weight} tone and a clear sense of phrasing."
    if any(f.kind == "mechanical" for f in faults):
        return f"The character is meant to be {pace}, but the delivery is rather mechanical and neutral."
    if r >= 3:
        return f"A {weight}, {pace} character comes through in places, but the intent is not consistent."
    return "The emotional intent is hard to hear; the problems in the playing get in the way of the music."


def tempo_answer(faults: list[Fault], ratings: dict[str, int], with_bars: bool) -> str:
    """Tempo and pulse, consistent with tempo_stability and tempo_choice."""
    kinds = ("rushing", "dragging", "unsteady_tempo", "wrong_tempo", "hesitation", "restart")
    fs = [f for f in faults if f.kind in kinds]
    if not fs:
        return "The pulse is steady and the tempo suits the piece."
    stability = ratings["tempo_stability"]
    steady = "fairly steady" if stability >= 5 else "not steady" if stability <= 3 else "uneven"
    return f"The pulse is {steady}: " + _join([describe(f, with_bars) for f in _severity(fs)[:3]]) + "."


def notes_answer(faults: list[Fault], rating: int, with_bars: bool) -> str:
    """Note accuracy, naming the bars of every note error."""
    parts = _group_notes(faults, with_bars)
    if not parts:
        return "All the notes are correct."
    return ("Mostly accurate, but there is " if rating >= 5 else "There are note errors: ") + _join(parts) + "."


def composer_answer(composer: str | None, period: str | None, source: str) -> str:
    """Composer and period when known; an exercise or folk tune is named as such."""
    if source == "exercise":
        return "This is a short technical exercise for students rather than a concert piece."
    if composer is None:
        return "This is a traditional folk tune; the composer is unknown."
    era = f", from the {period} period" if period else ""
    return f"This sounds like {composer}{era}."


def make_qa(
    labels: dict[str, Any], faults: list[Fault], info: dict[str, Any], held_out: bool, rng: np.random.Generator
) -> list[dict[str, str]]:
    """All question/answer pairs for one take (types: rating:<key>, overall, difficulty, technique,
    composer, open:<topic>)."""
    with_bars = info.get("score") is not None
    ratings = labels["ratings"]
    qa: list[dict[str, str]] = []
    for key in RUBRIC_KEYS:
        q = _pick(RATING_TEMPLATES, rng, held_out).format(a=_pick(ASPECT[key], rng, held_out))
        qa.append({"q": q, "a": str(ratings[key]), "type": f"rating:{key}"})
    qa.append({"q": _pick(OVERALL_Q, rng, held_out), "a": str(labels["overall"]), "type": "overall"})
    qa.append({"q": _pick(DIFFICULTY_Q, rng, held_out), "a": str(labels["difficulty"]), "type": "difficulty"})
    qa.append({"q": _pick(TECHNIQUE_Q, rng, held_out), "a": labels["technique"], "type": "technique"})
    qa.append(
        {
            "q": _pick(COMPOSER_Q, rng, held_out),
            "a": composer_answer(labels.get("composer"), info.get("period"), info.get("source", "")),
            "type": "composer",
        }
    )
    answers = {
        "open:feedback": feedback_answer(faults, labels["overall"], with_bars, rng),
        "open:work_on": work_on_answer(faults, ratings, with_bars, rng),
        "open:attack": attack_answer(faults, ratings["attack_cleanliness"], with_bars),
        "open:dynamics": dynamics_answer(faults, ratings, with_bars),
        "open:emotion": emotion_answer(info, faults, ratings),
        "open:tempo": tempo_answer(faults, ratings, with_bars),
        "open:notes": notes_answer(faults, ratings["pitch_accuracy"], with_bars),
    }
    for qtype, answer in answers.items():
        qa.append({"q": _pick(OPEN_Q[qtype], rng, held_out), "a": answer, "type": qtype})
    if with_bars:
        by_bar: dict[int, list[Fault]] = {}
        for f in faults:
            if len(f.bars) <= 2:
                for b in f.bars:
                    by_bar.setdefault(b, []).append(f)
        for bar in sorted(by_bar)[:3]:
            text = _join([describe(f, False) for f in by_bar[bar]])
            qa.append({"q": f"What happened in bar {bar}?", "a": f"In bar {bar} there is {text}.", "type": "open:bar"})
    return qa
