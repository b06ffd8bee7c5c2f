"""`llaqo serve` as a process: refuses open binding without a token, shuts down cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


def llaqo(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "LLAQO_TOKEN"}
    return subprocess.Popen([sys.executable, "-m", "llaqo_cli", *args], stderr=subprocess.PIPE, text=True,
                            env=env)


def test_binding_off_loopback_without_token_is_refused():
    proc = llaqo("serve", "--host", "0.0.0.0", "--ws-port", "0", "--no-model")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "--token" in err


def test_sigterm_cancels_the_unfinished_take_and_exits_cleanly():
    proc = llaqo("serve", "--ws-port", "0", "--osc-port", "0", "--no-model")
    try:
        port, startup = None, []
        deadline = time.monotonic() + 180
        while port is None and time.monotonic() < deadline:
            startup.append(proc.stderr.readline())
            match = re.search(r"serving ws://127\.0\.0\.1:(\d+)", startup[-1])
            port = int(match.group(1)) if match else None
        assert port, "server did not start"
        assert any("warmed up in" in line for line in startup), "the server listened before warming up"

        async def go():
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                await ws.send(json.dumps({"type": "hello", "client": "t", "protocol": 1}))
                assert json.loads(await ws.recv())["type"] == "ready"
                await ws.send(json.dumps({"type": "take.start", "take_id": "open", "sample_rate": 44100,
                                          "channels": 1, "format": "f32le"}))
                await ws.send(np.zeros(4410, dtype="<f4").tobytes())
                await ws.send(json.dumps({"type": "stats"}))
                assert json.loads(await ws.recv())["takes"] == 1
                proc.send_signal(signal.SIGTERM)
                messages = []
                try:
                    while True:
                        messages.append(json.loads(await ws.recv()))
                except ConnectionClosed as exc:
                    return messages, exc.rcvd.code if exc.rcvd else None

        messages, code = asyncio.run(go())
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [(m["type"], m["code"], m["take_id"]) for m in messages] == [("error", "cancelled", "open")]
    assert code == 1001
    assert rc == 0
    assert "shutting down" in proc.stderr.read()
