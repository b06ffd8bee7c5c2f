"""Student-like faults injected into a `Take` with controlled severity; each is recorded as a `Fault`.

Every injector takes (take, rng, severity in (0, 1]) and returns the changed take and the faults it made,
or no fault when the take offers nothing to spoil (e.g. no chords for asynchrony). A fault's `magnitude`
(0–1) is measured on the result where that is possible (see docs/labels.md for each definition).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llaqo_model.analysis.align import WRONG_NOTE_MAX_INTERVAL
from llaqo_model.analysis.metrics import onset_clusters
from llaqo_model.analysis.score import pitch_name
from llaqo_training.performance import NOTE_DTYPE, PEDAL_DTYPE, Take, warp


@dataclass
class Fault:
    """One injected problem: what, where (bar numbers) and how bad (0–1)."""

    kind: str
    bars: list[int]
    magnitude: float
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Manifest form."""
        out: dict[str, Any] = {"kind": self.kind, "bars": self.bars, "magnitude": round(float(self.magnitude), 3)}
        if self.detail:
            out["detail"] = self.detail
        return out


Result = tuple[Take, list[Fault]]
NOTE_FAULTS = ("wrong_note", "missed_note", "extra_note")


def _inner_bars(take: Take) -> np.ndarray:
    """Bars away from the excerpt's edges (where timing faults are unambiguous)."""
    bars = take.bars["bar"]
    return bars[1:-1] if len(bars) > 3 else bars


def _candidates(take: Take, bar_choice: np.ndarray) -> np.ndarray:
    """Indices of clearly audible notes in the given bars, not the first or last note of the take."""
    n = take.notes
    ok = np.isin(n["bar"], bar_choice) & (n["velocity"] >= 30) & (n["duration_sec"] >= 0.06)
    ok[np.argmin(n["onset_sec"])] = False
    ok[np.argmax(n["onset_sec"])] = False
    return np.flatnonzero(ok)


def _spread_pick(rng: np.random.Generator, pool: np.ndarray, notes: np.ndarray, count: int) -> list[int]:
    """Pick up to `count` notes, at least 0.6 s apart so that each error stands on its own."""
    picked: list[int] = []
    for i in rng.permutation(pool):
        if all(abs(notes["onset_sec"][i] - notes["onset_sec"][j]) > 0.6 for j in picked):
            picked.append(int(i))
        if len(picked) == count:
            break
    return sorted(picked, key=lambda i: notes["onset_sec"][i])


def _count(severity: float, duration_s: float) -> int:
    """How many note errors a player of this severity makes in the excerpt (at least one)."""
    return max(1, int(round(severity * duration_s / 5.0)))


def wrong_notes(take: Take, rng: np.random.Generator, severity: float, key_fifths: int = 0) -> Result:
    """Replace notes by a neighbouring key (1–3 semitones away), preferring melody notes."""
    take = take.copy()
    n = take.notes
    pool = _candidates(take, _inner_bars(take))
    melody = pool[n["melody"][pool]]
    chosen = _spread_pick(rng, melody if len(melody) >= 3 else pool, n, _count(severity, take.duration_s))
    faults = []
    for i in chosen:
        nearby = n["pitch"][np.abs(n["onset_sec"] - n["onset_sec"][i]) < 0.6]
        steps = [s for s in (1, -1, 2, -2, 3, -3) if n["pitch"][i] + s not in nearby]
        step = int(rng.choice(steps[:4])) if steps else 0
        if step == 0 or abs(step) > WRONG_NOTE_MAX_INTERVAL:
            continue
        expected = int(n["pitch"][i])
        n["pitch"][i] = expected + step
        faults.append(
            Fault(
                "wrong_note",
                [int(n["bar"][i])],
                1.0,
                {
                    "played": pitch_name(expected + step, key_fifths),
                    "expected": pitch_name(expected, key_fifths),
                    "time_s": round(float(n["onset_sec"][i]), 3),
                },
            )
        )
    return take, faults


def _restrikes(notes: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Which pool notes repeat a pitch struck in the 0.6 s before (leaving one out is barely audible)."""
    on, pitch = notes["onset_sec"], notes["pitch"]
    return np.array(
        [bool(np.any((pitch == pitch[i]) & (on < on[i] - 0.02) & (on >= on[i] - 0.6))) for i in pool], dtype=bool
    )


def missed_notes(take: Take, rng: np.random.Generator, severity: float, key_fifths: int = 0) -> Result:
    """Leave out notes (melody notes or notes on their own, which a listener would miss)."""
    n = take.notes
    pool = _candidates(take, _inner_bars(take))
    if len(pool):
        fresh = ~_restrikes(n, pool)
        pool = pool[fresh] if fresh.sum() >= 2 else pool
    melody = pool[n["melody"][pool]]
    chosen = _spread_pick(rng, melody if len(melody) >= 3 else pool, n, _count(severity, take.duration_s))
    faults = [
        Fault(
            "missed_note",
            [int(n["bar"][i])],
            1.0,
            {"expected": pitch_name(int(n["pitch"][i]), key_fifths), "time_s": round(float(n["onset_sec"][i]), 3)},
        )
        for i in chosen
    ]
    out = take.copy()
    out.notes = np.delete(out.notes, chosen)
    return out, faults


def extra_notes(take: Take, rng: np.random.Generator, severity: float, key_fifths: int = 0) -> Result:
    """Add a neighbouring key struck with a note: loud (a clear error) or soft (a brushed key, half weight)."""
    n = take.notes
    pool = _candidates(take, _inner_bars(take))
    lines = np.concatenate([take.bars["start_sec"], take.bars["end_sec"][-1:]])
    clear = np.min(np.abs(n["onset_sec"][pool][:, None] - lines[None, :]), axis=1) > 0.15
    pool = pool[clear] if clear.sum() >= 2 else pool
    chosen = _spread_pick(rng, pool, n, _count(severity, take.duration_s))
    added, faults = [], []
    for i in chosen:
        nearby = set(n["pitch"][np.abs(n["onset_sec"] - n["onset_sec"][i]) < 0.6].tolist())
        steps = [s for s in (1, 2, -1, -2, 3, -3) if n["pitch"][i] + s not in nearby]
        if not steps:
            continue
        loud = rng.random() < 0.6 + 0.4 * severity
        extra = n[i].copy()
        extra["pitch"] = n["pitch"][i] + int(rng.choice(steps))
        around = float(np.median(n["velocity"][np.abs(n["onset_sec"] - n["onset_sec"][i]) < 1.0]))
        if loud:
            extra["velocity"] = int(min(max(0.9 * n["velocity"][i], around), 120))
            extra["duration_sec"] = max(float(n["duration_sec"][i]), 0.1)
        else:
            extra["velocity"] = max(int(0.35 * around), 12)
            extra["duration_sec"] = 0.04
        extra["onset_sec"] += float(rng.uniform(0.0, 0.03))
        extra["melody"] = False
        extra["score_id"] = -1
        added.append(extra)
        faults.append(
            Fault(
                "extra_note",
                [int(n["bar"][i])],
                1.0 if loud else 0.5,
                {"played": pitch_name(int(extra["pitch"]), key_fifths), "time_s": round(float(extra["onset_sec"]), 3)},
            )
        )
    out = take.copy()
    if added:
        out.notes = np.sort(np.concatenate([out.notes, np.array(added, dtype=NOTE_DTYPE)]), order="onset_sec")
    return out, faults


def _cluster_start(take: Take, t: float) -> float:
    """The first onset of the chord (onset group) that contains time `t`, so pauses never split a chord."""
    on = take.notes["onset_sec"]
    return float(on[(on > t - 0.06) & (on <= t + 1e-9)].min())


def _insert_pause(take: Take, at_s: float, pause_s: float) -> Take:
    return warp(take, lambda t: np.where(np.asarray(t) >= at_s - 1e-6, np.asarray(t) + pause_s, np.asarray(t)))


def hesitations(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """Stop before a note (0.35–1.4 s) and go on, once or a few times."""
    pool = _candidates(take, _inner_bars(take))
    chosen = _spread_pick(rng, pool, take.notes, max(1, int(round(severity * 3))))
    times = sorted(float(take.notes["onset_sec"][i]) for i in chosen)
    faults = []
    for t in reversed(times):
        pause = 0.35 + 1.05 * severity * float(rng.uniform(0.6, 1.0))
        faults.append(Fault("hesitation", [take.bar_of(t)], min(1.0, pause / 1.4), {"pause_s": round(pause, 2)}))
        take = _insert_pause(take, _cluster_start(take, t) - 1e-4, pause)
    return take, faults[::-1]


def restart(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """Break off inside a bar, pause and replay the bar from its start."""
    inner = _inner_bars(take)
    bar = int(rng.choice(inner))
    row = take.bars[take.bars["bar"] == bar][0]
    in_bar = take.notes[(take.notes["bar"] == bar)]
    if len(in_bar) < 3:
        return take, []
    stop = _cluster_start(take, float(np.sort(in_bar["onset_sec"])[len(in_bar) // 2]))
    pause = 0.5 + 0.7 * severity
    shift = stop - float(row["start_sec"]) + pause
    replay_from = float(row["start_sec"])
    played = take.notes[
        (take.notes["onset_sec"] >= replay_from - 0.02) & (take.notes["onset_sec"] < stop - 1e-4)
    ].copy()
    out = _insert_pause(take, stop - 1e-4, shift)
    played["onset_sec"] += shift
    played["score_id"] = -1
    first_pass = (out.notes["onset_sec"] >= replay_from - 0.02) & (out.notes["onset_sec"] < stop - 1e-4)
    ends = np.minimum(out.notes["onset_sec"] + out.notes["duration_sec"], stop + 0.05)
    cut = np.maximum(ends - out.notes["onset_sec"], 0.03)
    out.notes["duration_sec"] = np.where(first_pass, cut, out.notes["duration_sec"])
    out.notes = np.sort(np.concatenate([out.notes, played]), order="onset_sec")
    return out, [Fault("restart", [bar], 1.0, {"pause_s": round(pause, 2)})]


def _scale_bars(take: Take, first: int, last: int, factor: float) -> Take:
    """Play bars first..last `factor` times as long (factor < 1: faster), shifting what follows."""
    rows = take.bars[(take.bars["bar"] >= first) & (take.bars["bar"] <= last)]
    a, b = float(rows["start_sec"].min()), float(rows["end_sec"].max())

    def fn(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        inside = a + (t - a) * factor
        return np.where(t < a, t, np.where(t <= b, inside, t + (b - a) * (factor - 1.0)))

    return warp(take, fn)


def rushing(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """One or two bars hurried by 25–65 % (the tempo jumps up there)."""
    inner = _inner_bars(take)
    first = int(rng.choice(inner))
    last = min(first + int(rng.integers(0, 2)), int(inner.max()))
    speed = 1.25 + 0.4 * severity
    return _scale_bars(take, first, last, 1.0 / speed), [
        Fault("rushing", list(range(first, last + 1)), severity, {"tempo_ratio": round(speed, 2)})
    ]


def dragging(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """One or two bars held back by 30–80 %."""
    inner = _inner_bars(take)
    first = int(rng.choice(inner))
    last = min(first + int(rng.integers(0, 2)), int(inner.max()))
    slow = 1.3 + 0.5 * severity
    return _scale_bars(take, first, last, slow), [
        Fault("dragging", list(range(first, last + 1)), severity, {"tempo_ratio": round(1 / slow, 2)})
    ]


def unsteady_tempo(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """Every bar at a different random tempo (spread 5–25 %): no steady pulse."""
    spread = 0.05 + 0.2 * severity
    factors = np.clip(np.exp(rng.normal(0, spread, len(take.bars))), 0.6, 1.6)
    starts, ends = take.bars["start_sec"], take.bars["end_sec"]
    new_len = (ends - starts) * factors
    new_starts = starts[0] + np.concatenate([[0.0], np.cumsum(new_len)])

    def fn(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        row = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)
        return np.where(t < starts[0], t, new_starts[row] + (t - starts[row]) * factors[row])

    measured = float(np.std(factors) / np.mean(factors))
    return warp(take, fn), [
        Fault(
            "unsteady_tempo",
            [int(b) for b in take.bars["bar"]],
            min(1.0, measured / 0.25),
            {"tempo_cv": round(measured, 3)},
        )
    ]


def wrong_tempo(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """The whole excerpt far too slow or too fast for the piece (up to a factor of 1.8)."""
    ratio = float(np.exp(severity * np.log(1.8) * rng.uniform(0.8, 1.0)))
    slow = rng.random() < 0.6
    factor = ratio if slow else 1.0 / ratio
    t0 = float(take.bars["start_sec"][0])
    out = warp(take, lambda t: t0 + (np.asarray(t, dtype=float) - t0) * factor)
    out.tempo_bpm = take.tempo_bpm / factor
    return out, [
        Fault(
            "wrong_tempo",
            [int(b) for b in take.bars["bar"]],
            min(1.0, np.log(ratio) / np.log(1.8)),
            {"direction": "slow" if slow else "fast", "tempo_ratio": round(1 / factor, 2)},
        )
    ]


def _velocity_spread(v: np.ndarray) -> float:
    return float(np.percentile(v, 95) - np.percentile(v, 5))


def flat_dynamics(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """Everything at one level: velocity contrast shrunk by up to 90 %."""
    out = take.copy()
    v = out.notes["velocity"].astype(float)
    before = _velocity_spread(v)
    v = v.mean() + (v - v.mean()) * (1.0 - 0.9 * severity)
    out.notes["velocity"] = np.clip(np.round(v), 10, 120)
    after = _velocity_spread(out.notes["velocity"].astype(float))
    mag = 1.0 - after / before if before > 0 else severity
    return out, [Fault("flat_dynamics", [int(b) for b in take.bars["bar"]], float(np.clip(mag, 0.05, 1.0)))]


def exaggerated_dynamics(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """Contrasts overdone: bar levels pushed apart (harsh fortes, vanishing pianos)."""
    out = take.copy()
    v = out.notes["velocity"].astype(float)
    bars = out.notes["bar"]
    swing = {b: float(rng.choice([-1, 1])) * (10 + 30 * severity) for b in np.unique(bars)}
    v = v + np.array([swing[b] for b in bars]) + (v - v.mean()) * severity
    out.notes["velocity"] = np.clip(np.round(v), 8, 127)
    return out, [Fault("exaggerated_dynamics", [int(b) for b in take.bars["bar"]], severity)]


def ignored_hairpins(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """Phrases not shaped: the crescendo/diminuendo between bars flattened out (by up to 100 %)."""
    out = take.copy()
    v = out.notes["velocity"].astype(float)
    bars = out.notes["bar"]
    means = {b: v[bars == b].mean() for b in np.unique(bars)}
    contour = np.array([means[b] for b in bars])
    v = v - severity * (contour - v.mean())
    out.notes["velocity"] = np.clip(np.round(v), 10, 120)
    return out, [Fault("ignored_hairpins", [int(b) for b in take.bars["bar"]], severity)]


def heavy_left_hand(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """Accompaniment (left hand) louder than the melody by 10–40 velocity steps."""
    lh = take.notes["staff"] >= 2
    if lh.sum() < 4 or (~lh).sum() < 4:
        return take, []
    out = take.copy()
    boost = 12 + 30 * severity
    out.notes["velocity"] = np.clip(out.notes["velocity"] + np.where(lh, boost, -0.3 * boost), 10, 127).round()
    return out, [Fault("heavy_left_hand", [int(b) for b in take.bars["bar"]], severity, {"velocity_gap": round(boost)})]


def articulation(take: Take, rng: np.random.Generator, severity: float, staccato_piece: bool = False) -> Result:
    """Legato↔staccato confusion: written legato chopped short, or written staccato smeared legato."""
    out = take.copy()
    n = out.notes
    first = int(rng.choice(take.bars["bar"]))
    span = max(2, int(round(len(take.bars) * (0.3 + 0.7 * severity))))
    bars = [int(b) for b in take.bars["bar"] if first <= b < first + span] or [int(take.bars["bar"][0])]
    sel = np.isin(n["bar"], bars)
    if staccato_piece:
        starts = np.unique(np.round(n["onset_sec"], 3))
        nxt = starts[np.clip(np.searchsorted(starts, n["onset_sec"][sel] + 0.01), 0, len(starts) - 1)]
        n["duration_sec"][sel] = np.maximum(nxt - n["onset_sec"][sel], n["duration_sec"][sel]) * (1.0 + 0.3 * severity)
        return out, [Fault("legato_for_staccato", bars, severity)]
    n["duration_sec"][sel] = np.maximum(n["duration_sec"][sel] * (1.0 - 0.8 * severity), 0.04)
    return out, [Fault("staccato_for_legato", bars, severity)]


ASYNCHRONY_FULL_S = 0.05  # chord notes 50 ms further apart than the clean take: the worst rating


def chord_asynchrony(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """Chord notes not together: spread by 25–110 ms (rolled or smeared attacks)."""
    out = take.copy()
    n = out.notes
    chords = [c for c in onset_clusters(n["onset_sec"]) if len(c) > 1]
    if len(chords) < 3:
        return _smudged_attacks(take, rng, severity)
    before = float(np.mean([np.ptp(n["onset_sec"][c]) for c in chords]))
    spread = 0.02 + 0.12 * severity
    for c in chords:
        n["onset_sec"][c] += rng.uniform(0, spread, len(c)) - 0.5 * spread
    measured = float(np.mean([np.ptp(n["onset_sec"][c]) for c in chords]))
    bars = sorted({int(n["bar"][c[0]]) for c in chords})
    out.notes = np.sort(n, order="onset_sec")
    # Judged by the spread the fault adds: the clean take's own spread (a performer's ~20 ms, rolled chords)
    # is what a take without this fault is rated 6 with, so counting it here rated the same sound both ways.
    added = max(0.0, measured - before)
    detail = {"spread_ms": round(1000 * measured), "added_ms": round(1000 * added)}
    return out, [Fault("chord_asynchrony", bars, min(1.0, added / ASYNCHRONY_FULL_S), detail)]


def _smudged_attacks(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """Single-line music: quiet neighbouring keys grazed just before some notes (unclean attacks)."""
    n = take.notes
    pool = _candidates(take, take.bars["bar"])
    if len(pool) < 4:
        return take, []
    count = max(1, int(round(len(pool) * (0.05 + 0.25 * severity))))
    chosen = rng.choice(pool, size=min(count, len(pool)), replace=False)
    grazes = n[chosen].copy()
    grazes["pitch"] += rng.choice([-1, 1], len(chosen))
    grazes["onset_sec"] -= rng.uniform(0.015, 0.04, len(chosen))
    grazes["duration_sec"] = rng.uniform(0.03, 0.06, len(chosen))
    grazes["velocity"] = np.clip(grazes["velocity"] * 0.35, 12, 40).round()
    grazes["melody"] = False
    grazes["score_id"] = -1
    out = take.copy()
    out.notes = np.sort(np.concatenate([out.notes, grazes]), order="onset_sec")
    bars = sorted({int(b) for b in grazes["bar"]})
    return out, [Fault("smudged_attack", bars, severity, {"grazed_notes": int(len(chosen))})]


def uneven_runs(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """Runs and repeated figures played unevenly in time (15–60 ms jitter) and loudness."""
    out = take.copy()
    n = out.notes
    sel = n["fast"] if n["fast"].sum() >= 8 else n["melody"]
    if sel.sum() < 6:
        return take, []
    jitter = 0.015 + 0.045 * severity
    n["onset_sec"][sel] += rng.normal(0, jitter, int(sel.sum()))
    n["velocity"][sel] = np.clip(n["velocity"][sel] + rng.normal(0, 4 + 14 * severity, int(sel.sum())), 10, 127).round()
    bars = sorted({int(b) for b in n["bar"][sel]})
    out.notes = np.sort(n, order="onset_sec")
    return out, [Fault("uneven_runs", bars, severity, {"jitter_ms": round(1000 * jitter)})]


def inaccurate_rhythm(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """Note values not respected: onsets pulled early or late by 10–60 ms throughout."""
    out = take.copy()
    n = out.notes
    clusters = onset_clusters(n["onset_sec"])
    jitter = 0.01 + 0.05 * severity
    for c in clusters[1:]:
        n["onset_sec"][c] += rng.normal(0, jitter)
    out.notes = np.sort(n, order="onset_sec")
    return out, [Fault("inaccurate_rhythm", [int(b) for b in take.bars["bar"]], severity)]


def pedal_blur(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """The pedal held through 2–5 bar lines (harmonies run together)."""
    out = take.copy()
    span = 2 + int(round(3 * severity))
    rows = take.bars
    first = int(rng.integers(0, max(1, len(rows) - span + 1)))
    a = float(rows["start_sec"][first]) + 0.05
    b = float(rows["end_sec"][min(first + span, len(rows)) - 1]) - 0.02
    keep = out.pedal[(out.pedal["offset_sec"] <= a) | (out.pedal["onset_sec"] >= b)]
    out.pedal = np.sort(np.concatenate([keep, np.array([(a, b)], dtype=PEDAL_DTYPE)]), order="onset_sec")
    bars = [int(x) for x in rows["bar"][first : first + span]]
    return out, [Fault("pedal_blur", bars, severity)]


def no_pedal(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """No pedal at all in music that needs it (only for takes whose clean version is pedalled)."""
    used = float(np.sum(take.pedal["offset_sec"] - take.pedal["onset_sec"])) / max(take.duration_s, 1e-3)
    if used < 0.3:
        return take, []
    out = take.copy()
    out.pedal = np.zeros(0, dtype=PEDAL_DTYPE)
    return out, [Fault("no_pedal", [int(b) for b in take.bars["bar"]], float(np.clip(used, 0.3, 0.9)))]


def mechanical(take: Take, rng: np.random.Generator, severity: float) -> Result:
    """No musical intent: rubato straightened onto an even grid and phrase dynamics levelled."""
    out = take.copy()
    rows = take.bars
    lengths = rows["end_sec"] - rows["start_sec"]
    even = np.full(len(rows), float(np.mean(lengths)))
    target = lengths + severity * (even - lengths)
    starts = rows["start_sec"]
    new_starts = starts[0] + np.concatenate([[0.0], np.cumsum(target)])
    factors = target / np.maximum(lengths, 1e-3)

    def fn(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        row = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)
        return np.where(t < starts[0], t, new_starts[row] + (t - starts[row]) * factors[row])

    out = warp(out, fn)
    v = out.notes["velocity"].astype(float)
    out.notes["velocity"] = np.clip(np.round(v.mean() + (v - v.mean()) * (1 - 0.6 * severity)), 10, 120)
    return out, [Fault("mechanical", [int(b) for b in rows["bar"]], severity)]


Injector = Callable[..., Result]
INJECTORS: dict[str, Injector] = {
    "wrong_note": wrong_notes,
    "missed_note": missed_notes,
    "extra_note": extra_notes,
    "hesitation": hesitations,
    "restart": restart,
    "rushing": rushing,
    "dragging": dragging,
    "unsteady_tempo": unsteady_tempo,
    "wrong_tempo": wrong_tempo,
    "flat_dynamics": flat_dynamics,
    "exaggerated_dynamics": exaggerated_dynamics,
    "ignored_hairpins": ignored_hairpins,
    "heavy_left_hand": heavy_left_hand,
    "articulation": articulation,
    "chord_asynchrony": chord_asynchrony,
    "uneven_runs": uneven_runs,
    "inaccurate_rhythm": inaccurate_rhythm,
    "pedal_blur": pedal_blur,
    "no_pedal": no_pedal,
    "mechanical": mechanical,
}
# Which faults can spoil each rubric dimension; the plan draws one family member per chosen dimension.
FAMILIES: dict[str, tuple[str, ...]] = {
    "pitch_accuracy": ("wrong_note", "missed_note", "extra_note"),
    "rhythm_accuracy": ("inaccurate_rhythm", "hesitation", "restart"),
    "tempo_stability": ("unsteady_tempo", "rushing", "dragging"),
    "tempo_choice": ("wrong_tempo",),
    "dynamic_range": ("flat_dynamics", "exaggerated_dynamics"),
    "dynamic_shaping": ("ignored_hairpins",),
    "articulation": ("articulation",),
    "attack_cleanliness": ("chord_asynchrony",),
    "evenness": ("uneven_runs",),
    "hand_balance": ("heavy_left_hand",),
    "pedaling": ("pedal_blur", "no_pedal"),
    "expressiveness": ("mechanical",),
}
# Timing faults change every later onset; they go last so that note faults keep their recorded times valid
# only up to a shift — note faults record bars, which warps never change.
ORDER = (
    "flat_dynamics",
    "exaggerated_dynamics",
    "ignored_hairpins",
    "heavy_left_hand",
    "mechanical",
    "articulation",
    "wrong_note",
    "missed_note",
    "extra_note",
    "chord_asynchrony",
    "uneven_runs",
    "inaccurate_rhythm",
    "pedal_blur",
    "no_pedal",
    "unsteady_tempo",
    "rushing",
    "dragging",
    "hesitation",
    "restart",
    "wrong_tempo",
)


def inject(
    take: Take, plan: dict[str, float], rng: np.random.Generator, key_fifths: int = 0, staccato_piece: bool = False
) -> Result:
    """Apply the planned faults (kind → severity) in a safe order; returns the take and what was done."""
    faults: list[Fault] = []
    for kind in ORDER:
        if kind not in plan:
            continue
        kwargs: dict[str, Any] = {}
        if kind in NOTE_FAULTS:
            kwargs["key_fifths"] = key_fifths
        if kind == "articulation":
            kwargs["staccato_piece"] = staccato_piece
        take, made = INJECTORS[kind](take, rng, float(np.clip(plan[kind], 0.02, 1.0)), **kwargs)
        faults += made
    for f in faults:
        if "time_s" in f.detail:
            f.detail.pop("time_s")
    return take, faults
