"""What a connection needs to serve requests: the configuration, the engine, the files it may touch.

Transports (the WebSocket session, the OSC endpoint, an HTTP endpoint) get a `ServeContext`, never
the whole `Server`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from llaqo_backend.access import AccessPolicy, FileGate, is_loopback, private_results_dir, token_ok
from llaqo_backend.engine import Engine, Limits

SERVER_NAME = "llaqo/0.1"


@dataclass
class ServerConfig:
    """Where to listen and how strictly; port 0 picks a free port, `osc_port=None` disables OSC.

    `files_from`: folders whose files clients may name (OSC); None means the user's home folder on
    loopback and none at all on any other address. `allow_origins`: browser Origins allowed to connect
    ('*' for any); native clients send none and are always allowed.
    """

    host: str = "127.0.0.1"
    ws_port: int = 8765
    osc_port: int | None = 9000
    http_port: int | None = None  # the loopback HTTP endpoint for notation plugins; `llaqo serve` uses 8766
    token: str | None = None
    results_dir: Path | None = None
    files_from: list[Path] | None = None
    allow_origins: tuple[str, ...] = ()
    hello_timeout_s: float = 10.0
    shutdown_grace_s: float = 15.0
    limits: Limits = field(default_factory=Limits)

    def readable_folders(self) -> list[Path]:
        """The folders clients may name files in."""
        if self.files_from is not None:
            return [Path(f) for f in self.files_from]
        # on loopback: the home folder, and the temporary folder where notation plugins save the open score
        return [Path.home(), Path(tempfile.gettempdir())] if is_loopback(self.host) else []


@dataclass
class ServeContext:
    """The small context every transport serves from."""

    config: ServerConfig
    engine: Engine
    results_dir: Path
    files: FileGate
    policy: AccessPolicy
    server_name: str = SERVER_NAME

    @classmethod
    def create(cls, config: ServerConfig, engine: Engine) -> ServeContext:
        """Check the results folder and set up the file gate and access policy."""
        return cls(config, engine, private_results_dir(config.results_dir), FileGate(config.readable_folders()),
                   AccessPolicy(config.host, tuple(config.allow_origins)))

    @property
    def limits(self) -> Limits:
        """The engine's limits."""
        return self.engine.limits

    def token_ok(self, given: str | None) -> bool:
        """Whether a client's token is right (always, when the server has none)."""
        return token_ok(given, self.config.token)
