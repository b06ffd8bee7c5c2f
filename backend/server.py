"""`llaqo serve`: the WebSocket server (websockets, asyncio) and the OSC endpoint on one event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from llaqo_backend.access import is_loopback, refusal
from llaqo_backend.context import ServeContext, ServerConfig
from llaqo_backend.engine import Engine, Limits
from llaqo_backend.http import HttpEndpoint
from llaqo_backend.osc import OscEndpoint
from llaqo_backend.session import HELLO_MAX_BYTES, Connection
from llaqo_model.errors import LlaqoError

log = logging.getLogger("llaqo.server")
TOKEN_ENV = "LLAQO_TOKEN"
WAITING_ROOM = 2  # connections (hello or not) beyond max_clients × this are refused at the handshake


class Server:
    """Accepts WebSocket clients and OSC peers; all heavy work goes through the engine's workers."""

    def __init__(self, engine: Engine, config: ServerConfig) -> None:
        if not is_loopback(config.host) and not config.token:
            raise LlaqoError(f"binding to {config.host} needs --token (or ${TOKEN_ENV}); loopback needs none")
        self.engine = engine
        self.config = config
        self.ctx = ServeContext.create(config, engine)
        self.connections: set[Connection] = set()
        self.osc: OscEndpoint | None = None
        self.ws_port = 0
        self.osc_port: int | None = None
        self.http: HttpEndpoint | None = None
        self.http_port: int | None = None
        self._ws_server = None

    @property
    def results_dir(self):
        """Where OSC results are written."""
        return self.ctx.results_dir

    async def start(self) -> None:
        """Bind the sockets (the ports actually bound are in `ws_port` / `osc_port`)."""
        cfg = self.config
        self._ws_server = await serve(
            self._handle,
            cfg.host,
            cfg.ws_port,
            max_size=HELLO_MAX_BYTES,  # raised to max_message_bytes once the client has said hello
            max_queue=4,
            process_request=self._check_request,
            family=socket.AF_INET6 if ":" in cfg.host else socket.AF_INET,
        )
        self.ws_port = self._ws_server.sockets[0].getsockname()[1]
        if cfg.osc_port is not None:
            self.osc = OscEndpoint(self.ctx)
            self.osc_port = await self.osc.start(cfg.host, cfg.osc_port)
        if cfg.http_port is not None:
            self.http = HttpEndpoint(self.ctx)
            self.http_port = self.http.start(cfg.http_port)
        log.warning("llaqo serving ws://%s:%d%s%s, model: %s", cfg.host, self.ws_port,
                    f", OSC udp {cfg.host}:{self.osc_port}" if self.osc_port else "",
                    f", plugins http://127.0.0.1:{self.http_port}" if self.http_port else "",
                    self.engine.model_name or "none (reports only)")

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """The handshake: browser Origins and foreign Host names get 403, a crowd 503 (see `access`)."""
        origins = request.headers.get_all("Origin")
        hosts = request.headers.get_all("Host")
        if len(origins) > 1 or len(hosts) != 1:
            return connection.respond(HTTPStatus.FORBIDDEN, "one Host header and at most one Origin\n")
        reason = refusal(hosts[0], origins[0] if origins else None, self.ctx.policy)
        if reason is not None:
            log.warning("refused a connection: %s", reason)
            return connection.respond(HTTPStatus.FORBIDDEN, reason + "\n")
        if self.engine.connections >= WAITING_ROOM * self.engine.limits.max_clients:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        connection = Connection(self.ctx, ws)
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)

    async def shutdown(self) -> None:
        """Stop accepting; let in-flight requests finish (or report them cancelled); close everything."""
        if self._ws_server is None:
            return
        log.warning("llaqo: shutting down")
        self._ws_server.server.close()  # stop accepting; open connections carry on for the grace period
        grace = self.config.shutdown_grace_s
        await asyncio.gather(
            *(c.drain(grace) for c in list(self.connections)),
            *([self.osc.drain(grace)] if self.osc is not None else []),
        )
        if self.osc is not None:
            self.osc.close()
        if self.http is not None:
            self.http.close()
        self._ws_server.close(close_connections=True)
        await self._ws_server.wait_closed()
        await asyncio.to_thread(self.engine.close)
        self._ws_server = None


async def serve_until_stopped(server: Server, stop: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or `stop` is set), then shut down cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.shutdown()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def build_engine(model: str | None, device: str = "auto", limits: Limits | None = None) -> Engine:
    """Load the transcriber and, when `model` is given, the assessor ('embedded' or a checkpoint dir)."""
    from llaqo_model.analysis.transcribe import Transcriber, TranscriberConfig
    from llaqo_model.io import pick_device

    transcriber = Transcriber(TranscriberConfig(device=pick_device(device)))
    assessor = None
    if model:
        from llaqo_model.model.assess import Assessor

        assessor = Assessor.load(model, device)
    return Engine(transcriber, assessor, limits)


def token_from_env(token: str | None) -> str | None:
    """--token, else $LLAQO_TOKEN."""
    return token or os.environ.get(TOKEN_ENV) or None
