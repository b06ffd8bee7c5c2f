"""Real-time factor of transcription and of the whole analysis for one take, on the CPU or a GPU.

    python benchmarks/bench_transcribe.py TAKE [--score SCORE] [--reference MIDI] [--device auto] [--runs 3]

After one warm-up run, times `--runs` analyses of the take and prints the real-time factor (seconds of
work per second of audio) of transcription alone and of the whole analysis (alignment to the score
included when one is given), and, with the MIDI the take was rendered from, transcription onset F1
(50 ms) to show the notes are the same on every device and precision.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from bench_analysis import onset_f1

from llaqo_model.analysis.pipeline import report_from_notes
from llaqo_model.analysis.score import load_score
from llaqo_model.analysis.transcribe import Transcriber, TranscriberConfig
from llaqo_model.io import load_audio, read_performance_midi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("take", type=Path)
    parser.add_argument("--score", type=Path, default=None)
    parser.add_argument("--reference", type=Path, default=None, help="performance MIDI the take was rendered from")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    transcriber = Transcriber(TranscriberConfig(device=args.device, precision=args.precision))
    samples, rate = load_audio(args.take, transcriber.sample_rate)
    seconds = len(samples) / rate
    score = load_score(args.score) if args.score else None
    transcriber.transcribe(samples[: 16 * rate])  # warm-up: kernels, allocator
    tr, whole = [], []
    for _ in range(args.runs):
        if transcriber.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        notes, pedal = transcriber.transcribe(samples)
        tr.append(time.perf_counter() - start)
        report = report_from_notes(notes, pedal, seconds, args.take.name, score)
        whole.append(time.perf_counter() - start)
    figures = {
        "device": torch.cuda.get_device_name() if transcriber.device == "cuda" else f"cpu x{torch.get_num_threads()}",
        "precision": transcriber.precision,
        "take_s": round(seconds, 1),
        "notes": len(notes),
        "transcription_s": round(float(np.median(tr)), 3),
        "rtf_transcription": round(float(np.median(tr)) / seconds, 4),
        "rtf_whole_analysis": round(float(np.median(whole)) / seconds, 4),
        "times_faster_than_real_time": round(seconds / float(np.median(whole)), 1),
    }
    if report.alignment is not None:
        figures["alignment_coverage"] = round(report.alignment.coverage, 3)
    if args.reference:
        figures["onset_f1"] = round(onset_f1(read_performance_midi(args.reference)[0], notes), 4)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
