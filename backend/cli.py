"""Subcommands of `llaqo` for this package: `llaqo serve`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands."""
    s = subparsers.add_parser(
        "serve", help="local server: WebSocket + OSC (+ loopback HTTP for plugins), takes in, reports and feedback out"
    )
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback; others need --token)")
    s.add_argument("--ws-port", type=int, default=8765, help="WebSocket port (0 = any free port)")
    s.add_argument("--osc-port", type=int, default=9000, help="OSC UDP port (0 = any free port, -1 = no OSC)")
    s.add_argument("--http-port", type=int, default=8766,
                   help="loopback HTTP port for notation plugins such as MuseScore's (0 = any free port, -1 = none)")
    s.add_argument("--model", default=None,
                   help="model checkpoint directory or 'embedded' (default: the embedded one when installed)")
    s.add_argument("--no-model", action="store_true", help="serve reports only")
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    s.add_argument("--token", default=None, help="shared secret clients send in hello (or $LLAQO_TOKEN)")
    s.add_argument("--results-dir", default=None,
                   help="where OSC results (JSON) are written (default: a private per-user folder in the temp dir)")
    s.add_argument("--files-from", action="append", default=None, metavar="DIR",
                   help="a folder whose files OSC clients may name (repeatable; default: your home and "
                        "temporary folders on loopback, none on any other address)")
    s.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a browser Origin allowed to connect, e.g. https://example.org ('*' for any; "
                        "repeatable). Native clients send none and are always allowed")
    s.add_argument("--max-take-s", type=float, default=600.0, help="longest take accepted, seconds")
    s.add_argument("--max-message-mb", type=float, default=16.0, help="largest WebSocket message or frame")
    s.add_argument("--max-takes-per-client", type=int, default=4, help="takes one client may hold at once")
    s.add_argument("--max-clients", type=int, default=64, help="WebSocket clients (or OSC peers) at once")
    s.add_argument("--max-requests-per-client", type=int, default=8,
                   help="score, assess and ask requests one client may have in flight")
    s.add_argument("--max-buffered-audio-s", type=float, default=3600.0,
                   help="audio held by all takes together, seconds (bounds memory)")
    s.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Load the transcriber (and model), serve until Ctrl-C / SIGTERM."""
    import asyncio
    import logging
    from pathlib import Path

    from llaqo_backend.access import is_loopback
    from llaqo_backend.engine import Limits
    from llaqo_backend.server import Server, ServerConfig, build_engine, serve_until_stopped, token_from_env
    from llaqo_model.errors import LlaqoError

    log = logging.getLogger("llaqo.server")
    log.setLevel(logging.INFO)
    model = args.model
    if model is None and not args.no_model:
        from llaqo_model.model.assess import default_model_path

        model = "embedded" if default_model_path() is not None else None
    limits = Limits(
        max_take_s=args.max_take_s,
        max_message_bytes=int(args.max_message_mb * 2**20),
        max_takes_per_client=args.max_takes_per_client,
        max_clients=args.max_clients,
        max_buffered_audio_s=args.max_buffered_audio_s,
        max_requests_per_client=args.max_requests_per_client,
    )
    config = ServerConfig(
        host=args.host,
        ws_port=args.ws_port,
        osc_port=None if args.osc_port < 0 else args.osc_port,
        http_port=None if args.http_port < 0 else args.http_port,
        token=token_from_env(args.token),
        results_dir=Path(args.results_dir) if args.results_dir else None,
        files_from=[Path(d) for d in args.files_from] if args.files_from else None,
        allow_origins=tuple(args.allow_origin),
        limits=limits,
    )
    if not is_loopback(config.host) and not config.token:
        raise LlaqoError(f"binding to {config.host} needs --token (or $LLAQO_TOKEN); loopback needs none")
    engine = build_engine(None if args.no_model else model, args.device, limits)
    log.info("warmed up in %.1f s", engine.warm_up())
    server = Server(engine, config)
    asyncio.run(serve_until_stopped(server))
    return 0
