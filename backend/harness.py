"""Run a `Server` on its own event loop in a background thread (tests, benchmarks, embedding in apps)."""

from __future__ import annotations

import asyncio
import threading

from llaqo_backend.server import Server


class ServerThread:
    """`with ServerThread(server) as s:` serves on `s.url` until the block ends (clean shutdown)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="llaqo-server", daemon=True)

    @property
    def url(self) -> str:
        """ws:// address of the running server."""
        return f"ws://{self.server.config.host}:{self.server.ws_port}"

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.server.shutdown()

    def start(self) -> ServerThread:
        """Start serving; returns once the sockets are bound."""
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 60) -> None:
        """Shut the server down cleanly and wait for the thread."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
