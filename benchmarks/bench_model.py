"""Model benchmarks.

CPU (embedded checkpoint): model memory, first answer token latency after the report is ready, tokens/s.
GPU (`--paper`, random weights, nothing downloaded): one bf16 LoRA training step of the paper-scale model
at batch ≥ 4 with 40 s audio (peak memory), single-stream generation tokens/s against the memory-bandwidth
limit, and batched generation throughput.

    python benchmarks/bench_model.py [--model DIR] [--seconds 30] [--threads 2]
    python benchmarks/bench_model.py --paper --skip-cpu --batch 4   # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch

from llaqo_model.analysis.report import Bar, Issue, Measures, Note, PerformanceReport
from llaqo_model.model.lm import decode


def take(seconds: float, rate: int = 16000) -> np.ndarray:
    """A deterministic piano-like test signal (decaying partials)."""
    t = np.arange(int(seconds * rate)) / rate
    pitch = 220 * 2 ** (np.floor(t * 4) % 12 / 12)
    return (0.2 * np.sin(2 * np.pi * pitch * t) * np.exp(-3 * (t % 0.25))).astype(np.float32)


def demo_report(seconds: float) -> PerformanceReport:
    """A report with a few flagged bars, as the analysis would produce."""
    bars = [
        Bar(bar=b, start_s=2.0 * b, end_s=2.0 * b + 2, issues=[Issue("rushing", f"bar {b}: rushing", 2.0 * b)])
        for b in (3, 7)
    ]
    return PerformanceReport(
        audio="bench.wav",
        score=None,
        duration_s=seconds,
        bars=bars,
        notes=[Note(0.25 * i, 0.25 * i + 0.2, 60 + i % 12, 64 + i % 20) for i in range(int(seconds * 4))],
        measures=Measures(tempo_bpm=96.0, tempo_cv=0.08, velocity_mean=70, velocity_range=40),
    )


# Peak memory bandwidth (GB/s) of the GPUs we run on, by name; --bandwidth-gbs overrides.
BANDWIDTH_GBS = {"H200": 4800.0, "H100": 3350.0, "A100": 2039.0}


def tokens_per_s(model, audio, n_tokens: int, compiled: bool = False) -> float:
    """Steady-state decoding speed over all rows of `audio`: `n_tokens` greedy steps with the KV cache
    (EOS ignored), counted per generated token of every row; `compiled`: static cache + CUDA graph."""
    batch = audio.feats.shape[0]
    embeds, mask, _ = model.embed_prompts(audio, ["What feedback would you give this pianist?"] * batch, [None] * batch)
    steps = decode(model.lm, embeds, mask, n_tokens + 1, eos_id=-1, compiled=compiled)
    next(steps)  # the prefill step
    if embeds.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    count = sum(1 for _ in steps)
    if embeds.is_cuda:
        torch.cuda.synchronize()
    return batch * count / (time.perf_counter() - start)


def bench_cpu(args: argparse.Namespace) -> dict:
    """Embedded model on CPU."""
    from llaqo_model.model.assess import Assessor

    torch.set_num_threads(args.threads)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assessor = Assessor.load(args.model, device="cpu")
    model = assessor.model
    param_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    samples, report = take(args.seconds), demo_report(args.seconds)
    list(assessor.ask(samples, 16000, report, "How was the tempo?"))  # warm-up
    first = []
    for _ in range(5):
        start = time.perf_counter()
        next(iter(assessor.ask(samples, 16000, report, "How was the tempo in bar 3?")), None)
        first.append(time.perf_counter() - start)
    with assessor.cpu_threads():
        audio = model.encode_audio([model.prepare(samples, 16000)])
        tps = tokens_per_s(model, audio, args.tokens)
    start = time.perf_counter()
    assessor.assess(samples, 16000, report)
    assess_s = time.perf_counter() - start
    describe = []
    for _ in range(5):  # the descriptor head alone: fbank windows, three feature streams, the MLP
        start = time.perf_counter()
        "".join(assessor.ask(samples, 16000, report, "How stable is the timing?"))
        describe.append(time.perf_counter() - start)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "device": "cpu",
        "threads": args.threads,
        "model_threads": assessor.threads or args.threads,
        "model": assessor.name,
        "params": sum(p.numel() for p in model.parameters()),
        "model_weights_mb": round(param_mb, 2),
        "process_peak_rss_mb": round(rss, 1),
        "rss_growth_loading_and_running_mb": round(rss - rss0, 1),
        "take_seconds": args.seconds,
        "first_token_ms_median": round(1000 * float(np.median(first)), 1),
        "tokens_per_s": round(tps, 1),
        "full_assessment_s": round(assess_s, 2),
        "descriptors_ms_median": round(1000 * float(np.median(describe)), 1) if model.descriptor_head else None,
    }


def train_step_figures(model, prepared, args: argparse.Namespace) -> dict:
    """Median time and peak GPU memory of `args.steps` LoRA training steps at batch `args.batch`."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    torch.cuda.reset_peak_memory_stats()
    step_times = []
    for _ in range(args.steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        audio = model.encode_audio([prepared] * args.batch)
        answers = ["The left hand was uneven in bars 3 to 7; keep the semiquavers steady."] * args.batch
        loss = model(audio, ["What feedback would you give this pianist?"] * args.batch, [None] * args.batch, answers)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        step_times.append(time.perf_counter() - start)
    peak_gb = torch.cuda.max_memory_allocated() / 2**30
    print(f"paper-scale LoRA step: batch {args.batch}, {np.median(step_times[1:]):.3f} s, peak {peak_gb:.2f} GiB",
          flush=True)
    return {
        "train_batch": args.batch,
        "audio_seconds": 40.0,
        "train_step_s": round(float(np.median(step_times[1:] or step_times)), 3),
        "train_peak_memory_gib": round(peak_gb, 2),
        "fits_80gb": peak_gb * 2**30 < 80e9,
    }


def bench_paper_gpu(args: argparse.Namespace) -> dict:
    """Paper-scale model (random weights, bf16, LoRA, gradient checkpointing) on one GPU."""
    from llaqo_model.model.llaqo import LlaqoModel, paper_config
    from llaqo_model.model.tokenizer import train_tokenizer

    if not torch.cuda.is_available():
        return {"paper": "skipped: no CUDA device on this machine"}
    torch.manual_seed(0)
    config = paper_config()
    tokenizer = train_tokenizer([], vocab_size=2000)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlaqoModel(config, tokenizer)
    torch.set_default_dtype(torch.float32)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    model.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    samples = take(40.0)
    prepared = model.prepare(samples, 16000)
    train = train_step_figures(model, prepared, args) if args.steps else {}
    model.eval()
    batched = {}
    with torch.no_grad():
        tokens_per_s(model, model.encode_audio([prepared]), 8)  # warm-up
        tps = tokens_per_s(model, model.encode_audio([prepared]), args.tokens)
        for b in args.gen_batches:
            batched[str(b)] = round(tokens_per_s(model, model.encode_audio([prepared] * b), args.tokens), 1)
        compiled = {}
        for b in [1, *args.gen_batches]:
            audio = model.encode_audio([prepared] * b)
            start = time.perf_counter()
            tokens_per_s(model, audio, args.tokens, compiled=True)  # compiles the step for this shape
            warm = time.perf_counter() - start
            compiled[str(b)] = round(tokens_per_s(model, audio, args.tokens, compiled=True), 1)
            compiled[f"{b}_compile_s"] = round(warm, 1)
        with torch.compiler.set_stance(skip_guard_eval_unsafe=True):  # same shapes: guards already passed
            audio = model.encode_audio([prepared])
            compiled["1_without_guard_checks"] = round(tokens_per_s(model, audio, args.tokens, compiled=True), 1)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.lm.parameters())
    name = torch.cuda.get_device_name()
    gbs = args.bandwidth_gbs or next((v for k, v in BANDWIDTH_GBS.items() if k in name), 3350.0)
    bound = gbs * 1e9 / weight_bytes
    return {
        "device": name,
        **train,
        "lm_weights_gb": round(weight_bytes / 1e9, 2),
        "bandwidth_gbs": gbs,
        "generation_tokens_per_s": round(tps, 1),
        "ms_per_token": round(1000 / tps, 2),
        "bandwidth_bound_tokens_per_s": round(bound, 1),
        "fraction_of_bound": round(tps / bound, 3),
        "batched_tokens_per_s": batched,
        "compiled_tokens_per_s": compiled,
        "compiled_fraction_of_bound": round(compiled["1"] / bound, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded", help="checkpoint directory or 'embedded'")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the test take")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64, help="tokens to generate for the speed test")
    parser.add_argument("--paper", action="store_true", help="also benchmark the paper-scale model (GPU)")
    parser.add_argument("--skip-cpu", action="store_true", help="skip the embedded CPU benchmark")
    parser.add_argument("--batch", type=int, default=4, help="training batch of the paper-scale step")
    parser.add_argument("--steps", type=int, default=3, help="paper-scale training steps to time (0: none)")
    parser.add_argument("--gen-batches", type=int, nargs="*", default=[16], help="batched generation sizes")
    parser.add_argument("--bandwidth-gbs", type=float, default=None, help="GPU memory bandwidth (default: by GPU name)")
    args = parser.parse_args()
    results = {} if args.skip_cpu else {"embedded_cpu": bench_cpu(args)}
    if args.paper:
        results["paper_gpu"] = bench_paper_gpu(args)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
