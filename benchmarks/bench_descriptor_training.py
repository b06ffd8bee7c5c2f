"""Which training reports give the descriptor head the best held-out figures from transcription?

Fits the head (its shipped configuration) on each kind of training table of a PercePiano manifest and prints
mean R² over the 19 scales on the held-out sound's transcribed takes of one split, beside the statistics
baseline fitted on the same table and the head with every input shuffled between takes. Uses only what
`llaqo corpus import percepiano` and `llaqo corpus analyse` have cached beside the manifest (no new
transcription); the sampled-piano rows need `scripts/get_sounds.sh` before the import. `--renders soundfont`
scores the split's second rendering instead (a training SoundFont; `llaqo corpus analyse PP --split val`).

    python benchmarks/bench_descriptor_training.py runs/pp/manifest.jsonl --split val [--renders soundfont]
"""

from __future__ import annotations

import argparse
import warnings

from llaqo_model.model.descriptor_head import DescriptorConfig
from llaqo_training.dataset import read_manifest
from llaqo_training.descriptor_data import DescriptorTable, build_table, concat, from_midi, transcribed
from llaqo_training.descriptor_eval import (
    HELD_OUT_ONLY,
    SIMULATED_COPIES,
    heard_takes,
    held_out_table,
    percepiano_dirs,
    training_table,
)
from llaqo_training.descriptor_fit import HeadFit, fit_head, predict_head, scale_scores, statistics_baseline
from llaqo_training.render import SAMPLED_SOUND
from llaqo_training.transcription_noise import TranscriptionNoise


def simulated(midi: DescriptorTable, paired_midi: DescriptorTable, heard: DescriptorTable) -> DescriptorTable:
    """`midi` rows through the transcription noise learned from `heard` and its MIDI twin, plus `heard`."""
    noise = TranscriptionNoise.fit(paired_midi.inputs, heard.inputs)
    return concat([midi.repeated(noise.apply(midi.inputs, SIMULATED_COPIES)), heard])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", help="a PercePiano manifest (llaqo corpus import percepiano)")
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument(
        "--renders",
        choices=["held-out", "soundfont"],
        default="held-out",
        help="score the split's takes rendered with the held-out sound, or their second rendering with a training "
        "SoundFont (whose dynamics the transcriber barely hears: how the fit holds on a harder sound)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    entries = read_manifest(args.manifest)
    dirs = percepiano_dirs(args.manifest)
    if args.renders == "held-out":
        held = held_out_table(entries, args.manifest, args.split, "transcribed", max_takes=0)
    else:
        second = [e for e in entries if e.get("split") == args.split and e.get("sound") != HELD_OUT_ONLY]
        heard_now = [e for e in second if (dirs["transcribed"] / f"{e['id']}.json").is_file()]
        held = build_table(heard_now, transcribed(dirs["transcribed"]), dirs["inputs_transcribed"])
    passages = len(set(held.passages))
    print(f"{args.split} ({args.renders} renders): {len(held.ids)} transcribed takes of {passages} passages")
    train = [e for e in entries if e.get("split") == "train" and e.get("descriptors")]
    sampled = [e for e in train if e.get("sound") == SAMPLED_SOUND]
    listened = [e for e in heard_takes(train, dirs["transcribed"]) if e.get("sound") == SAMPLED_SOUND]
    midi = training_table(entries, args.manifest, "midi")  # makes every training segment's MIDI report first
    midi_sampled = build_table(sampled, from_midi(dirs["midi"]), dirs["inputs_midi"])
    tables = {"midi, SoundFont renders": midi, "midi, every render": concat([midi, midi_sampled])}
    if listened:
        heard = build_table(listened, transcribed(dirs["transcribed"]), dirs["inputs_transcribed"])
        paired = build_table(listened, from_midi(dirs["midi"]), dirs["inputs_midi"])
        tables[f"transcribed sampled piano ({len(heard.ids)} takes, shipped)"] = heard
        tables["midi and transcribed sampled piano"] = training_table(entries, args.manifest, "both")
        tables["simulated on SoundFont renders"] = simulated(midi, paired, heard)
        tables["simulated on sampled-piano renders"] = simulated(midi_sampled, paired, heard)
    config, fit = DescriptorConfig(), HeadFit()
    for name, table in tables.items():
        head = fit_head(table, config, fit)
        model = scale_scores(predict_head(head, held), held)["mean"]["r2"]
        baseline = scale_scores(statistics_baseline(table, held), held)["mean"]["r2"]
        shuffled = scale_scores(predict_head(head, held, shuffle=config.streams), held)["mean"]["r2"]
        print(
            f"{name:40s} {len(table.ids):5d} rows  R² {model:6.3f}  statistics baseline {baseline:6.3f}  "
            f"every input shuffled {shuffled:6.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
