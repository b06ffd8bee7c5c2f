"""Helpers for the server tests: rendered takes, a minimal JSON Schema check, raw WebSocket frames."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "protocol.schema.json").read_text())
_TYPES = {"string": str, "integer": int, "number": (int, float), "object": dict, "array": list, "null": type(None)}


def check_schema(message: dict[str, Any], side: str = "server") -> None:
    """Assert that a message matches its definition in docs/protocol.schema.json."""
    definition = SCHEMA["$defs"][f"{side}:{message['type']}"]
    for name in definition["required"]:
        assert name in message, f"{message['type']} lacks {name}"
    for name, prop in definition["properties"].items():
        if name not in message:
            continue
        value = message[name]
        if "const" in prop:
            assert value == prop["const"]
            continue
        types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        assert any(isinstance(value, _TYPES[t]) and not isinstance(value, bool) for t in types), (name, value)
        if "enum" in prop:
            assert value in prop["enum"]
        if "items" in prop:
            for item in value:
                for key in prop["items"]["required"]:
                    assert key in item


def b64(data: bytes) -> str:
    """Base64 text for a `data` field."""
    return base64.b64encode(data).decode()


def raw_frame_header(opcode: int, declared_length: int) -> bytes:
    """A masked client frame header that declares `declared_length` bytes of payload."""
    header = bytes([0x80 | opcode])
    if declared_length < 126:
        header += bytes([0x80 | declared_length])
    elif declared_length < 2**16:
        header += bytes([0x80 | 126]) + struct.pack("!H", declared_length)
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", declared_length)
    return header + os.urandom(4)


def raw_handshake(host: str, port: int) -> socket.socket:
    """Open a TCP socket and complete a WebSocket handshake by hand (to send frames no client library would)."""
    sock = socket.create_connection((host, port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert b" 101 " in response.split(b"\r\n", 1)[0]
    return sock


def masked_text_frame(text: str) -> bytes:
    """A complete masked text frame."""
    payload = text.encode()
    header = raw_frame_header(0x1, len(payload))
    mask = header[-4:]
    return header + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_code_from(sock: socket.socket) -> int | None:
    """Read server frames until a close frame; return its status code."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return None
        if not chunk:
            break
        data += chunk
    i = 0
    while i + 2 <= len(data):
        opcode, length = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if length == 126:
            length = struct.unpack("!H", data[i : i + 2])[0]
            i += 2
        elif length == 127:
            length = struct.unpack("!Q", data[i : i + 8])[0]
            i += 8
        if opcode == 0x8:
            return struct.unpack("!H", data[i : i + 2])[0] if length >= 2 else None
        i += length
    return None


def wav_bytes(samples: np.ndarray, rate: int, fmt: str = "WAV") -> bytes:
    """Encode audio as a WAV or FLAC file in memory."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt)
    return buf.getvalue()
