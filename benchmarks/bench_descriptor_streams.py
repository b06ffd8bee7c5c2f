"""Which per-take streams should the descriptor head read? Cross-validation over PercePiano's training passages.

Fits the head (a ridge per scale) on the training passages' rows with each set of streams (their
performance-MIDI reports, or with `--reports transcribed` the reports of their audio as `llaqo corpus
analyse` cached them), five folds grouped by passage, and prints mean R² over the 19 scales on the held-out
folds beside the statistics baseline. Validation and test passages are never read, so the choice can be made
here and the held-out splits looked at once afterwards.

    python benchmarks/bench_descriptor_streams.py runs/pp/manifest.jsonl [--reports transcribed]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.model_selection import GroupKFold

from llaqo_model.model.descriptor_head import DescriptorConfig
from llaqo_training.dataset import read_manifest
from llaqo_training.descriptor_eval import training_table
from llaqo_training.descriptor_fit import HeadFit, fit_head, predict_head, scale_scores, statistics_baseline

FOLDS = 5
SHIPPED = ("statistics", "aligned", "rubric", "texture", "audio", "tempo")
CANDIDATES = {
    "statistics, aligned, rubric, texture, audio": SHIPPED[:-1],
    "shipped: … + tempo against the score's mark": SHIPPED,
    "… + tonality (mode, key clarity, chromaticism)": SHIPPED + ("tonality",),
    "… + the score's marks (dynamics, accents, hairpins, pedal, slurs)": SHIPPED + ("written",),
    "… + tonality + the score's marks": SHIPPED + ("tonality", "written"),
}
SELECTED = "… + tonality + the score's marks, streams chosen per scale (HeadFit.select_streams)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", help="a PercePiano manifest (llaqo corpus import percepiano)")
    parser.add_argument("--reports", choices=["midi", "transcribed"], default="midi", help="the rows' reports")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    table = training_table(read_manifest(args.manifest), args.manifest, args.reports)
    passages = np.array(table.passages)
    folds = list(GroupKFold(n_splits=FOLDS).split(table.inputs, groups=passages))
    print(f"{len(table.ids)} training rows, {len(set(passages))} passages, {FOLDS} folds by passage")
    baseline = np.zeros_like(table.labels)
    for train, held in folds:
        baseline[held] = statistics_baseline(table.subset(_mask(train, table)), table.subset(_mask(held, table)))
    print(f"{'statistics baseline':90s} R² {scale_scores(baseline, table)['mean']['r2']:6.3f}")
    base = scale_scores(baseline, table)["per_scale"]
    runs = [(name, streams, HeadFit()) for name, streams in CANDIDATES.items()]
    runs.append((SELECTED, SHIPPED + ("tonality", "written"), HeadFit(select_streams=True)))
    for name, streams, fit in runs:
        pred = np.zeros_like(table.labels)
        for train, held in folds:
            head = fit_head(table.subset(_mask(train, table)), DescriptorConfig(streams=streams), fit)
            pred[held] = predict_head(head, table.subset(_mask(held, table)))
        scores = scale_scores(pred, table)
        below = sum(scores["per_scale"][k]["r2"] < base[k]["r2"] - 0.02 for k in scores["per_scale"])
        print(f"{name:90s} R² {scores['mean']['r2']:6.3f}  scales > 0.02 below the baseline: {below}", flush=True)


def _mask(rows: np.ndarray, table) -> np.ndarray:
    keep = np.zeros(len(table.ids), dtype=bool)
    keep[rows] = True
    return keep


if __name__ == "__main__":
    main()
