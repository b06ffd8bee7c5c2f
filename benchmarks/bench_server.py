"""Latency of the server for a take streamed in real time: take.end → report, → assessment, → first answer token.

    python benchmarks/bench_server.py [--seconds 40] [--model tiny|embedded|PATH|none] [--device auto]
    python benchmarks/bench_server.py --save-take DIR   # write the rendered take and its score, then stop
    python benchmarks/bench_server.py --take DIR/take.flac --score DIR/score.musicxml

Starts an in-process server (real WebSocket on loopback), renders the Bach chorale BWV 66.6 with a
SoundFont at a tempo that makes the take `--seconds` long (or reads a take saved earlier, for machines
without a SoundFont renderer), streams it in 50 ms frames paced like a recording, sends take.end and
assess at once, and prints the latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from llaqo_backend.harness import ServerThread
from llaqo_backend.server import Server, ServerConfig, build_engine
from llaqo_bridge.client import LlaqoClient
from llaqo_model.io import load_audio

RATE = 44100


def render_take(seconds: float, out_dir: Path) -> tuple[np.ndarray, Path]:
    """The chorale played at the tempo that lasts `seconds`, and its score."""
    from llaqo_model.analysis.score import load_score
    from llaqo_training.examples import mechanical_performance, write_music21_score
    from llaqo_training.render import render_notes

    score_path = write_music21_score("bach/bwv66.6", out_dir / "bwv66.6.musicxml")
    score = load_score(score_path)
    beats = float(score.note_array["onset_beat"].max() - score.note_array["onset_beat"].min()) + 1.0
    bpm = 60.0 * beats / (seconds - 0.9)
    audio = render_notes(mechanical_performance(score, bpm=bpm), sample_rate=RATE, tail_s=0.5)
    return audio[: int(seconds * RATE)], score_path


def model_argument(name: str, out_dir: Path) -> str | None:
    """'tiny' builds the test checkpoint; 'none' serves reports only."""
    if name == "none":
        return None
    if name == "tiny":
        from llaqo_model.model.assess import build_tiny_checkpoint

        return str(build_tiny_checkpoint(out_dir / "tiny"))
    return name


async def one_take(url: str, audio: np.ndarray, score_path: Path, take_id: str, ask: bool) -> dict[str, float]:
    async with await LlaqoClient.connect(url, "bench") as client:
        await client.send_score(take_id, score_path)
        await client.stream_take(take_id, audio, RATE, chunk_s=0.05, realtime=True, end=False)
        t_end = time.perf_counter()
        await client.end_take(take_id)
        since_end = time.perf_counter() - t_end  # assess goes out right after take.end
        result = await client.assess(take_id)
        figures = {"report_s": since_end + result.report_latency_s}
        figures["notes"] = len(result.report["notes"])
        figures["coverage"] = (result.report["alignment"] or {}).get("coverage", 0.0)
        if result.assessment_latency_s is not None:
            figures["assessment_s"] = since_end + result.assessment_latency_s
        if ask and client.has_model:
            t_ask = time.perf_counter()
            async for _ in client.ask(take_id, "What should I practise next?"):
                figures["first_token_s"] = time.perf_counter() - t_ask
                break
        return figures


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="  server: %(message)s")
    logging.getLogger("llaqo.server").setLevel(logging.INFO)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--model", default="tiny", help="tiny (test checkpoint), embedded, a checkpoint dir, or none")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--take", type=Path, help="a saved take (with --score) instead of rendering one")
    ap.add_argument("--score", type=Path)
    ap.add_argument("--save-take", type=Path, help="write take.flac and score.musicxml here and stop")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.take:
            audio, score_path = load_audio(args.take, RATE)[0], args.score
        else:
            audio, score_path = render_take(args.seconds, Path(args.save_take or tmp))
        if args.save_take:
            sf.write(args.save_take / "take.flac", audio, RATE)
            return
        engine = build_engine(model_argument(args.model, Path(tmp)), args.device)
        engine.warm_up()  # as `llaqo serve` does before it listens
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
              f"device {engine.transcriber.device}, load average {os.getloadavg()[0]:.1f}")
        print(f"model: {engine.model_name}; take: {len(audio) / RATE:.1f} s streamed in real time (50 ms frames)")
        with ServerThread(Server(engine, ServerConfig(ws_port=0, osc_port=None))) as running:
            for run in range(args.runs):
                f = asyncio.run(one_take(running.url, audio, score_path, f"bench{run}", ask=True))
                line = (f"run {run + 1}: take.end→report {f['report_s']:.2f} s "
                        f"({f['notes']} notes, coverage {f['coverage']:.2f})")
                if "assessment_s" in f:
                    line += f", take.end→assessment {f['assessment_s']:.2f} s"
                if "first_token_s" in f:
                    line += f", ask→first answer token {f['first_token_s']:.2f} s"
                print(line, flush=True)


if __name__ == "__main__":
    main()
