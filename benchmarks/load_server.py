"""Load: N clients stream takes at once; prints throughput, p50/p95 latency, peak memory, model batches.

    python benchmarks/load_server.py [--clients 20] [--seconds 12] [--model tiny|embedded|PATH|none] [--fast]

Every client streams the chorale (rendered at a tempo that lasts `--seconds`) with its score, in
real time unless `--fast`, sends take.end and assess, and checks that its report is correct (every
score note matched). Transcription runs on one worker thread and model work on one model thread,
so the figures show queueing, not 20 parallel model runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_server import RATE, model_argument, render_take

from llaqo_backend.harness import ServerThread
from llaqo_backend.server import Server, ServerConfig, build_engine
from llaqo_bridge.client import LlaqoClient


async def client_run(url: str, n: int, audio: np.ndarray, score_path: Path, realtime: bool) -> dict:
    await asyncio.sleep(random.uniform(0, 0.5))  # clients press record at slightly different moments
    async with await LlaqoClient.connect(url, f"load{n}") as client:
        await client.send_score(f"t{n}", score_path)
        await client.stream_take(f"t{n}", audio, RATE, chunk_s=0.05, realtime=realtime, end=False)
        t_end = time.perf_counter()
        await client.end_take(f"t{n}")
        since_end = time.perf_counter() - t_end
        result = await client.assess(f"t{n}")
        align = result.report["alignment"] or {}
        return {
            "report_s": since_end + result.report_latency_s,
            "assessment_s": None if result.assessment_latency_s is None else since_end + result.assessment_latency_s,
            "correct": bool(align.get("matches_score")) and align.get("missed") == 0 and align.get("wrong") == 0,
            "stats": await client.stats(),
        }


async def run(url: str, clients: int, audio: np.ndarray, score_path: Path, realtime: bool) -> tuple[list, float]:
    t0 = time.perf_counter()
    results = await asyncio.gather(*(client_run(url, n, audio, score_path, realtime) for n in range(clients)))
    return results, time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="  server: %(message)s")
    logging.getLogger("llaqo.server").setLevel(logging.INFO)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument(
        "--seconds",
        type=float,
        default=12.0,
        help="take length (the chorale at < 12 s is too fast to transcribe note-perfectly)",
    )
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--fast", action="store_true", help="stream as fast as possible instead of in real time")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        audio, score_path = render_take(args.seconds, Path(tmp))
        engine = build_engine(model_argument(args.model, Path(tmp)), args.device)
        engine.warm_up()  # as `llaqo serve` does before it listens
        server = Server(engine, ServerConfig(ws_port=0, osc_port=None))
        with ServerThread(server) as running:
            results, wall = asyncio.run(run(running.url, args.clients, audio, score_path, not args.fast))
            batches = list(engine.model_worker.batches) if engine.model_worker else []
    reports = [r["report_s"] for r in results]
    peak = max(r["stats"]["peak_rss_mb"] for r in results)
    held = max(r["stats"]["buffered_audio_s"] for r in results)
    print(
        f"{args.clients} clients × {len(audio) / RATE:.1f} s takes ({'fast' if args.fast else 'real time'}), "
        f"device {engine.transcriber.device}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"correct reports: {sum(r['correct'] for r in results)}/{len(results)}")
    print(
        f"wall {wall:.1f} s; throughput {len(results) / wall * 60:.1f} takes/min, "
        f"{len(results) * len(audio) / RATE / wall:.2f} s of audio per second"
    )
    print(f"take.end→report: p50 {pct(reports, 50):.2f} s, p95 {pct(reports, 95):.2f} s, max {max(reports):.2f} s")
    if results[0]["assessment_s"] is not None:
        assess = [r["assessment_s"] for r in results]
        print(
            f"take.end→assessment: p50 {pct(assess, 50):.2f} s, p95 {pct(assess, 95):.2f} s; "
            f"model batches {batches} ({len(batches)} model calls for {len(results)} takes)"
        )
    print(f"server peak RSS {peak:.0f} MB; most audio held at once {held:.0f} s")


if __name__ == "__main__":
    main()
