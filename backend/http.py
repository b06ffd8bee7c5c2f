"""A loopback HTTP endpoint for notation-program plugins that have no WebSocket (MuseScore 3 and 4).

MuseScore's plugin engine can make a synchronous `XMLHttpRequest` and write the open score to a file, and
nothing more when it runs headless. So the plugin saves the open score as MusicXML, names it and the take's
audio file by path, and gets back the annotation plan (`llaqo_model.annotate.ScoreAnnotations`) that it
writes into the open score itself. Paths name files on this machine, so the endpoint only ever listens on
127.0.0.1, whatever `--host` the WebSocket uses. Requests are refused unless the Host header is a
loopback name (DNS rebinding), they carry no browser Origin (a web page cannot post here), the body is
JSON (`Content-Type: application/json`, which a page cannot send without a CORS preflight that is never
granted), and — when the server has a token — `Authorization: Bearer TOKEN` matches it.

    POST /v1/annotate  {"score": "/abs/score.musicxml", "audio": "/abs/take.wav"}  → {"type": "pending", "job"}
    GET  /v1/jobs/JOB  → the answer ({"type": "annotations", ...} or an error), or "pending" again after
                         LONG_POLL_S (MuseScore gives up on a request after 30 s, an analysis can take longer)
    GET  /v1/health

The messages are in docs/protocol.md. The HTTP server (stdlib, one thread per request) hands the work to
the event loop's engine, so plugin requests queue with WebSocket and OSC takes on the same workers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from llaqo_backend import protocol
from llaqo_backend.access import AccessPolicy, token_ok
from llaqo_backend.access import refusal as access_refusal
from llaqo_backend.context import ServeContext
from llaqo_backend.events import AssessmentReady, ReportReady
from llaqo_model.annotate import plan_annotations, read_written_score
from llaqo_model.errors import AudioError, LlaqoError, ScoreError

log = logging.getLogger("llaqo.server")
HTTP_HOST = "127.0.0.1"  # paths in requests name this machine's files: never listen beyond it
PLUGIN_POLICY = AccessPolicy(HTTP_HOST)  # plugins are native programs: no browser Origin is ever allowed
MAX_BODY_BYTES = 64 * 1024  # two paths and a few options
LONG_POLL_S = 15.0  # a job request waits this long for the answer: well inside MuseScore's 30 s request limit
MAX_JOBS = 16  # unanswered and uncollected jobs held at once (each holds one take until it is analysed)
STATUS = {protocol.UNAUTHORIZED: 401, "forbidden": 403, "not_found": 404, protocol.BAD_JSON: 400,
          protocol.BAD_MESSAGE: 400, protocol.SERVER_BUSY: 503, protocol.INTERNAL: 500}
FAILED_STATUS = 422  # the request was fine, the take or score was not (the message says why)


class HttpError(Exception):
    """A refused request: an error code from the protocol and one readable line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def refusal(headers: Any, token: str | None) -> HttpError | None:
    """Why a request may not be served (Host, Origin, token), or None when it may: the WebSocket's rules
    (`access.refusal`), with no browser Origin allowed at all."""
    reason = access_refusal(headers.get("Host"), headers.get("Origin"), PLUGIN_POLICY)
    if reason is not None:
        return HttpError("forbidden", reason)
    if token:
        sent = (headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if not token_ok(sent, token):
            return HttpError(protocol.UNAUTHORIZED, "missing or wrong token (Authorization: Bearer TOKEN)")
    return None


class HttpEndpoint:
    """The HTTP server thread; work runs on the event loop through the engine's assess flow."""

    def __init__(self, ctx: ServeContext) -> None:
        self.ctx = ctx
        self.loop: asyncio.AbstractEventLoop | None = None
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self.jobs: dict[str, concurrent.futures.Future] = {}

    def start(self, port: int) -> int:
        """Listen on 127.0.0.1:`port` (0 = any free port); return the port bound."""
        self.loop = asyncio.get_running_loop()
        endpoint = self

        class Handler(_Handler):
            owner = endpoint

        self._http = ThreadingHTTPServer((HTTP_HOST, port), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="llaqo-http", daemon=True)
        self._thread.start()
        return self._http.server_address[1]

    def close(self) -> None:
        """Stop listening (requests in flight are answered or dropped with the loop)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def submit(self, body: dict[str, Any]) -> str:
        """Handler thread: start the request on the event loop; return its job id."""
        assert self.loop is not None
        if len(self.jobs) >= MAX_JOBS:
            raise HttpError(protocol.SERVER_BUSY, f"{MAX_JOBS} plugin requests are already waiting; try again later")
        job = f"j{next(self._ids)}"
        self.jobs[job] = asyncio.run_coroutine_threadsafe(self.annotate(body), self.loop)
        return job

    def collect(self, job: str) -> tuple[int, dict[str, Any]]:
        """Handler thread: the job's answer (status, message), waiting up to LONG_POLL_S; then it is forgotten."""
        future = self.jobs.get(job)
        if future is None:
            raise HttpError("not_found", f"no job {job} (already collected, or never started)")
        try:
            result = future.result(timeout=LONG_POLL_S)
        except concurrent.futures.TimeoutError:
            return 200, {"type": "pending", "job": job}
        except (LlaqoError, protocol.ProtocolError) as exc:  # the take or score is unusable, or the server is full
            result = (FAILED_STATUS, {"type": "error", "code": exc.code, "message": str(exc)})
        except Exception as exc:  # the server keeps serving; the plugin shows the line
            log.error("plugin request %s failed: %r", job, exc)
            result = (500, {"type": "error", "code": protocol.INTERNAL, "message": f"unexpected {type(exc).__name__}"})
        else:
            result = (200, result)
        self.jobs.pop(job, None)
        return result

    async def annotate(self, body: dict[str, Any]) -> dict[str, Any]:
        """Analyse the take against the score (and assess it when a model is loaded); return the plan."""
        score_path, audio_path = _path(body, "score"), _path(body, "audio")
        engine, files, take_id = self.ctx.engine, self.ctx.files, f"http-{next(self._ids)}"
        fmt = protocol.SCORE_FORMAT_OF_SUFFIX.get(score_path.suffix.lower())
        if fmt is None:
            raise ScoreError(f"unsupported score type '{score_path.suffix[:20]}' (.musicxml, .xml, .mxl, .mid)")
        score_bytes = await asyncio.to_thread(files.read, str(score_path), ScoreError)
        parsed = engine.parse_score(take_id, score_bytes, fmt, score_path.name)
        score = await parsed
        audio = await asyncio.to_thread(files.read, str(audio_path), AudioError)
        take = await engine.take_from_bytes(take_id, audio, audio_path.suffix.lstrip("."), "http", audio_path.name)
        report, assessment = None, None
        try:
            async for event in engine.assess_events(take, parsed, audio_path.name):
                if isinstance(event, ReportReady):
                    report = event.report
                elif isinstance(event, AssessmentReady):
                    assessment = event.assessment
        finally:
            engine.cancel(take)

        def plan() -> dict[str, Any]:
            # the score for editing is parsed from the bytes the gate read, never from the path a second time
            with tempfile.TemporaryDirectory(prefix="llaqo-") as folder:
                copy = Path(folder) / score_path.name
                copy.write_bytes(score_bytes)
                written = read_written_score(copy)
            return plan_annotations(report, score, written, assessment).to_dict()

        return {
            "type": "annotations",
            "annotations": await asyncio.to_thread(plan),
            "warnings": report.warnings,
            "assessment": assessment.to_dict() if assessment is not None else None,
        }


def _path(body: dict[str, Any], key: str) -> Path:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise HttpError(protocol.BAD_MESSAGE, f"'{key}' must be the path of a file on this machine")
    path = Path(value)
    if not path.is_absolute():
        raise HttpError(protocol.BAD_MESSAGE, f"'{key}' must be an absolute path")
    return path


class _Handler(BaseHTTPRequestHandler):
    owner: HttpEndpoint
    server_version = "llaqo/0.1"

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self._answer(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._answer(self._post)

    def _get(self) -> tuple[int, dict[str, Any]]:
        if self.path == "/v1/health":
            ctx = self.owner.ctx
            return 200, {"type": "ok", "server": ctx.server_name, "model": ctx.engine.model_name}
        if self.path.startswith("/v1/jobs/"):
            return self.owner.collect(self.path.removeprefix("/v1/jobs/"))
        raise HttpError("not_found", f"no {self.path} here (POST /v1/annotate, GET /v1/jobs/JOB, GET /v1/health)")

    def _post(self) -> tuple[int, dict[str, Any]]:
        if self.path != "/v1/annotate":
            raise HttpError("not_found", f"no {self.path} here (POST /v1/annotate)")
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            raise HttpError(protocol.BAD_MESSAGE, "the body must be JSON (Content-Type: application/json)")
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY_BYTES:
            raise HttpError(protocol.BAD_MESSAGE, f"the body must be 1 to {MAX_BODY_BYTES} bytes of JSON")
        try:
            body = json.loads(self.rfile.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise HttpError(protocol.BAD_JSON, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise HttpError(protocol.BAD_MESSAGE, "the body must be a JSON object")
        for key in ("score", "audio"):  # refuse malformed requests before queueing them
            _path(body, key)
        return 202, {"type": "pending", "job": self.owner.submit(body)}

    def _answer(self, handle: Callable[[], tuple[int, dict[str, Any]]]) -> None:
        try:
            if (refused := refusal(self.headers, self.owner.ctx.config.token)) is not None:
                raise refused
            status, message = handle()
        except HttpError as exc:
            status, message = STATUS.get(exc.code, 400), {"type": "error", "code": exc.code, "message": str(exc)}
        try:
            self._send(status, message)
        except ConnectionError:  # the plugin gave up waiting; a later job request still gets the answer
            log.info("http client left before the answer")

    def _send(self, status: int, message: dict[str, Any]) -> None:
        data = json.dumps(message, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's signature)
        log.info("http %s", format % args)
