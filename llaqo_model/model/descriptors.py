"""The 19 perceptual descriptors (PercePiano's scales) and the questions that ask for them.

Each descriptor is a number on its labels' own scale, 0–1 (the listeners' 1–7 mean divided by 7). A question
names its scale's two ends, as the PercePiano paper's questions do: "How stable is the timing, from 1
(stable) to 7 (unstable)?"; the model's answer on that 1–7 scale is `7·value` (the listeners' mean) rounded
to one decimal.
"""

from __future__ import annotations

import re

# key → (what is asked, low end, high end), in the dataset's order.
DESCRIPTORS: dict[str, tuple[str, str, str]] = {
    "timing_stable_unstable": ("How stable is the timing", "stable", "unstable"),
    "articulation_short_long": ("How long is the articulation", "short", "long"),
    "articulation_soft_hard": ("How hard is the touch", "soft/cushioned", "hard/solid"),
    "pedal_sparse_saturated": ("How much pedal is used", "sparse/dry", "saturated/wet"),
    "pedal_clean_blurred": ("How clean is the pedalling", "clean", "blurred"),
    "timbre_even_colorful": ("How colourful is the timbre", "even", "colourful"),
    "timbre_shallow_rich": ("How rich is the timbre", "shallow", "rich"),
    "timbre_bright_dark": ("How dark is the timbre", "bright", "dark"),
    "timbre_soft_loud": ("How loud is the sound", "soft", "loud"),
    "dynamic_mellow_crude": ("How crude are the dynamics", "sophisticated/mellow", "raw/crude"),
    "dynamic_range_little_large": ("How large is the dynamic range", "little range", "large range"),
    "music_making_fast_slow": ("How slow-paced is the music making", "fast-paced", "slow-paced"),
    "music_making_flat_spacious": ("How spacious is the music making", "flat", "spacious"),
    "music_making_disproportioned_balanced": (
        "How balanced is the music making",
        "disproportioned",
        "balanced",
    ),
    "music_making_pure_dramatic": ("How dramatic is the music making", "pure", "dramatic/expressive"),
    "mood_pleasant_dark": ("How dark is the mood", "optimistic/pleasant", "dark"),
    "mood_low_high_energy": ("How much energy does the playing have", "low energy", "high energy"),
    "mood_honest_imaginative": ("How imaginative is the playing", "honest", "imaginative"),
    "interpretation_unsatisfactory_convincing": (
        "How convincing is the interpretation",
        "unsatisfactory/doubtful",
        "convincing",
    ),
}
DESCRIPTOR_KEYS: tuple[str, ...] = tuple(DESCRIPTORS)
SCALE_POINTS = 7  # listeners answered on 1–7; labels are the mean divided by 7


def descriptor_question(key: str) -> str:
    """The paper-style question for one descriptor."""
    asked, low, high = DESCRIPTORS[key]
    return f"{asked}, from 1 ({low}) to {SCALE_POINTS} ({high})?"


def to_scale(value: float) -> float:
    """A 0–1 descriptor on the question's 1–7 scale (the listeners' mean rating; 1/7 → 1, 1 → 7)."""
    return round(min(float(SCALE_POINTS), max(1.0, SCALE_POINTS * value)), 1)


def answer_text(value: float) -> str:
    """The model's answer to a descriptor question."""
    return f"{to_scale(value):.1f}"


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z ]", "", text.lower()).strip()


def descriptor_of(question: str) -> str | None:
    """The descriptor a question asks for ("How stable is the timing?" with or without its scale), else None."""
    q = _normalise(question.split(",")[0].split("?")[0])
    for key, (asked, _, _) in DESCRIPTORS.items():
        if q == _normalise(asked):
            return key
    return None
