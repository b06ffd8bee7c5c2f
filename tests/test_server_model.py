"""The server with a tiny real model checkpoint: assessments, streamed answers, batching, 20 clients at once."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from llaqo_backend.engine import Engine, Limits
from llaqo_backend.harness import ServerThread
from llaqo_backend.server import Server, ServerConfig
from llaqo_backend.worker import ModelWorker, Worker
from llaqo_bridge.client import LlaqoClient, LlaqoServerError
from llaqo_model.analysis.report import RUBRIC_KEYS, PerformanceReport

RATE = 44100


@pytest.fixture(scope="module")
def assessor(tmp_path_factory):
    from llaqo_model.model.assess import Assessor, build_tiny_checkpoint

    return Assessor.load(build_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny"), "cpu")


@pytest.fixture(scope="module")
def short_take(chorale) -> np.ndarray:
    """The chorale's first 3 s at 100 bpm."""
    from llaqo_training.examples import mechanical_performance
    from llaqo_training.render import render_notes

    return render_notes(mechanical_performance(chorale, bpm=100.0), sample_rate=RATE)[: 3 * RATE]


@pytest.fixture(scope="module")
def model_server(analyzer, assessor):
    limits = Limits(max_buffered_audio_s=120)
    config = ServerConfig(ws_port=0, osc_port=None, limits=limits)
    with ServerThread(Server(Engine(analyzer.transcriber, assessor, limits), config)) as running:
        yield running


def test_assessment_and_streamed_answer(model_server, short_take):
    async def go():
        async with await LlaqoClient.connect(model_server.url) as client:
            assert client.ready["model"] == "tiny"
            await client.stream_take("m", short_take, RATE, chunk_s=0.02)
            result = await client.assess("m")
            deltas = [d async for d in client.ask("m", "What should I practise next?")]
            request_id = f"q{next(client._ids)}"
            await client.send_json({"type": "ask", "take_id": "m", "question": "And now?", "request_id": request_id})
            messages = []
            while not messages or messages[-1]["type"] != "answer":
                messages.append(await client.next_message(request_id, 60))
            return result, deltas, messages

    result, deltas, messages = asyncio.run(go())
    assessment = result.assessment
    assert set(assessment["ratings"]) == set(RUBRIC_KEYS)
    assert all(1 <= v <= 6 for v in assessment["ratings"].values())
    assert {"overall", "difficulty", "technique", "feedback", "bar_comments"} <= set(assessment)
    assert [s for s, _ in result.progress] == ["transcribing", "analysed", "assessing"]
    assert result.assessment_latency_s >= result.report_latency_s
    assert len(deltas) > 1  # streamed, not one blob
    assert [m["type"] for m in messages[:-1]] == ["answer.delta"] * (len(messages) - 1)
    assert messages[-1]["text"] == "".join(m["text"] for m in messages[:-1])


def test_queued_assessments_run_as_one_batch(assessor):
    report = PerformanceReport(audio="x", score=None, duration_s=2.0)
    audio = (np.random.default_rng(0).standard_normal(2 * RATE) * 0.1).astype(np.float32)
    worker = ModelWorker(assessor, max_batch=8)

    async def go():
        futures = [worker.assess(audio, RATE, report) for _ in range(5)]  # queued in one loop step
        return await asyncio.gather(*futures)

    try:
        results = asyncio.run(go())
    finally:
        worker.close()
    assert len(results) == 5 and all(set(r.ratings) == set(RUBRIC_KEYS) for r in results)
    assert sum(worker.batches) == 5 and len(worker.batches) <= 2


@pytest.mark.slow
def test_twenty_clients_streaming_at_once(model_server, short_take):
    async def one(n: int):
        async with await LlaqoClient.connect(model_server.url, f"c{n}") as client:
            await client.stream_take(f"t{n}", short_take, RATE, chunk_s=0.05)
            result = await client.assess(f"t{n}", timeout=600)
            return result, await client.stats()

    async def go():
        results = await asyncio.gather(*(one(n) for n in range(20)))
        async with await LlaqoClient.connect(model_server.url) as client:
            return results, await client.stats()

    engine = model_server.server.engine
    batches_before = len(engine.model_worker.batches)
    results, after = asyncio.run(go())
    notes = [r.report["notes"] for r, _ in results]
    assert len(notes[0]) > 10 and all(n == notes[0] for n in notes)  # every client got the same, full report
    assert all(r.assessment is not None for r, _ in results)
    assert max(s["buffered_audio_s"] for _, s in results) <= 20 * 3.1  # bounded by what the clients hold
    batches = engine.model_worker.batches[batches_before:]
    assert sum(batches) == 20 and len(batches) < 20  # queued and batched, not 20 model runs
    assert after["takes"] == 0 and after["buffered_audio_s"] == 0  # all freed when the clients left


def test_warm_up_runs_the_model_once_and_leaves_no_take_behind(analyzer, assessor):
    engine = Engine(analyzer.transcriber, assessor)
    try:
        calls = []
        original = assessor.assess
        assessor.assess = lambda *a, **k: calls.append(a) or original(*a, **k)
        try:
            seconds = engine.warm_up()
        finally:
            del assessor.assess
        assert seconds > 0
        assert len(calls) == 1 and calls[0][1] == engine.model_rate
        assert engine.stats()["takes"] == 0 and engine.buffered_s() == 0
    finally:
        engine.close()


def test_a_failing_model_call_gives_an_error_and_the_next_assess_works(model_server, short_take, assessor):
    """The model thread died on a failure outside its try (here: a wrong number of results), after which
    every assess hung forever."""

    async def go():
        async with await LlaqoClient.connect(model_server.url) as client:
            await client.stream_take("bad", short_take, RATE, chunk_s=0.05)
            assessor.assess_batch = lambda batch: []  # one broken model call
            try:
                with pytest.raises(LlaqoServerError) as failed:
                    await client.assess("bad", timeout=120)
            finally:
                del assessor.assess_batch
            await client.stream_take("good", short_take, RATE, chunk_s=0.05)
            return failed.value, await client.assess("good", timeout=120)

    error, result = asyncio.run(go())
    assert error.code == "internal_error" and error.data["take_id"] == "bad"
    assert set(result.assessment["ratings"]) == set(RUBRIC_KEYS)


def test_a_dead_worker_thread_is_restarted_on_the_next_job():
    worker = Worker("test-worker")

    async def go():
        def interrupted():
            raise KeyboardInterrupt  # not an Exception: still handed back, the thread lives on

        with pytest.raises(KeyboardInterrupt):
            await worker.submit(0, interrupted)
        worker._thread.join(0.1)
        alive_after_interrupt = worker._thread.is_alive()
        worker.close()  # the thread stops as if it had died
        worker._closed = False
        return alive_after_interrupt, await asyncio.wait_for(worker.submit(0, lambda: 42), 30)

    try:
        alive, answer = asyncio.run(go())
    finally:
        worker.close()
    assert alive and answer == 42 and worker.restarts == 1
