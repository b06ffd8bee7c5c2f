"""The WebSocket protocol: typed client messages, server message builders and their JSON Schema.

One table (`CLIENT_FIELDS`, `SERVER_FIELDS`) defines every message; parsing, the JSON Schema in
docs/protocol.schema.json (`python -m llaqo_backend.protocol > docs/protocol.schema.json`) and the
docs all follow it. Names are a contract: extend, never rename.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from dataclasses import dataclass, fields
from typing import Any

from llaqo_model.model.assessment import Assessment

PROTOCOL_VERSION = 1
MAX_ID_CHARS = 128
MAX_QUESTION_CHARS = 2000
PCM_FORMATS = ("f32le", "s16le")
AUDIO_FILE_FORMATS = ("wav", "flac")
SCORE_FORMATS = ("musicxml", "mxl", "midi")
SCORE_SUFFIX = {"musicxml": ".musicxml", "mxl": ".mxl", "midi": ".mid"}
SCORE_FORMAT_OF_SUFFIX = {".musicxml": "musicxml", ".xml": "musicxml", ".mxl": "mxl", ".mid": "midi", ".midi": "midi"}
CAPABILITIES = ["stream", "take.file", "score", "assess", "ask", "stats"]

# Error codes sent in {"type": "error", "code": ...}.
BAD_JSON = "bad_json"
BAD_MESSAGE = "bad_message"
UNKNOWN_TYPE = "unknown_type"
UNAUTHORIZED = "unauthorized"
NOT_READY = "hello_required"
UNKNOWN_TAKE = "unknown_take"
NO_TAKE = "no_take"
TAKE_ENDED = "take_ended"
DUPLICATE_TAKE = "duplicate_take"
BAD_FRAME = "bad_frame"
TOO_LONG = "take_too_long"
TOO_MANY_TAKES = "too_many_takes"
SERVER_BUSY = "server_busy"
TOO_MANY_REQUESTS = "too_many_requests"
NO_MODEL = "no_model"
SCORE_MISMATCH = "score_mismatch"
CANCELLED = "cancelled"
INTERNAL = "internal_error"

def _json_type(annotation: str) -> str:
    """JSON type of a dataclass field annotation (string annotations, as `from __future__` leaves them)."""
    for prefix, json_type in (("dict", "object"), ("list", "array"), ("int", "integer"), ("float", "number")):
        if annotation.startswith(prefix):
            return json_type
    return "string"


def assessment_fields() -> dict[str, tuple[str, bool]]:
    """The assessment message's fields, derived from `Assessment` (`to_dict` always sends every one)."""
    return {f.name: (_json_type(str(f.type)), True) for f in fields(Assessment)}


# field → (JSON type, required); "enum" values are listed in ENUMS.
CLIENT_FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "hello": {"client": ("string", True), "protocol": ("integer", True), "token": ("string", False)},
    "take.start": {
        "take_id": ("string", True),
        "sample_rate": ("integer", True),
        "channels": ("integer", True),
        "format": ("string", True),
    },
    "take.end": {"take_id": ("string", True)},
    "take.file": {"take_id": ("string", True), "format": ("string", True), "data": ("string", True)},
    "score": {"take_id": ("string", True), "format": ("string", True), "data": ("string", True)},
    "assess": {"take_id": ("string", True)},
    "ask": {"take_id": ("string", True), "question": ("string", True), "request_id": ("string", True)},
    "stats": {},
}
SERVER_FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "ready": {
        "protocol": ("integer", True),
        "server": ("string", True),
        "model": ("string|null", True),
        "capabilities": ("array", True),
        "limits": ("object", True),
    },
    "progress": {"take_id": ("string", True), "stage": ("string", True), "fraction": ("number", True)},
    "report": {"take_id": ("string", True), "report": ("object", True)},
    "assessment": {"take_id": ("string", True), **assessment_fields()},
    "answer.delta": {"request_id": ("string", True), "take_id": ("string", False), "text": ("string", True)},
    "answer": {"request_id": ("string", True), "take_id": ("string", False), "text": ("string", True)},
    "error": {
        "code": ("string", True),
        "message": ("string", True),
        "take_id": ("string", False),
        "request_id": ("string", False),
    },
    "stats": {
        "connections": ("integer", True),
        "takes": ("integer", True),
        "buffered_audio_s": ("number", True),
        "queued_jobs": ("integer", True),
        "rss_mb": ("number", True),
        "peak_rss_mb": ("number", True),
    },
}
ENUMS = {
    ("take.start", "format"): PCM_FORMATS,
    ("take.file", "format"): AUDIO_FILE_FORMATS,
    ("score", "format"): SCORE_FORMATS,
}


class ProtocolError(Exception):
    """A client mistake answered with an error message; the connection stays open."""

    def __init__(self, code: str, message: str, take_id: str | None = None, request_id: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.take_id = take_id
        self.request_id = request_id

    def to_message(self) -> dict[str, Any]:
        """The error as a server message."""
        return error(self.code, self.message, self.take_id, self.request_id)


@dataclass
class Hello:
    client: str
    protocol: int
    token: str | None = None


@dataclass
class TakeStart:
    take_id: str
    sample_rate: int
    channels: int
    format: str


@dataclass
class TakeEnd:
    take_id: str


@dataclass
class TakeFile:
    take_id: str
    format: str
    data: bytes


@dataclass
class ScoreMessage:
    take_id: str
    format: str
    data: bytes


@dataclass
class Assess:
    take_id: str


@dataclass
class Ask:
    take_id: str
    question: str
    request_id: str


@dataclass
class Stats:
    pass


ClientMessage = Hello | TakeStart | TakeEnd | TakeFile | ScoreMessage | Assess | Ask | Stats
_CLASSES: dict[str, type] = {
    "hello": Hello,
    "take.start": TakeStart,
    "take.end": TakeEnd,
    "take.file": TakeFile,
    "score": ScoreMessage,
    "assess": Assess,
    "ask": Ask,
    "stats": Stats,
}
_PY_TYPES = {"string": str, "integer": int, "number": (int, float), "object": dict, "array": list}


def parse_client_message(text: str) -> ClientMessage:
    """Parse and validate one JSON text frame; raises `ProtocolError` with a readable message."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(BAD_JSON, f"message is not valid JSON ({exc.msg} at char {exc.pos})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError(BAD_MESSAGE, 'a message must be a JSON object with a string "type"')
    kind = data["type"]
    take_id = data.get("take_id") if isinstance(data.get("take_id"), str) else None
    request_id = data.get("request_id") if isinstance(data.get("request_id"), str) else None
    if kind not in CLIENT_FIELDS:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type '{kind[:40]}'", take_id, request_id)
    values: dict[str, Any] = {}
    for name, (json_type, required) in CLIENT_FIELDS[kind].items():
        if name not in data:
            if required:
                raise ProtocolError(BAD_MESSAGE, f"'{kind}' needs '{name}'", take_id, request_id)
            continue
        value = data[name]
        if not isinstance(value, _PY_TYPES[json_type]) or isinstance(value, bool):
            raise ProtocolError(BAD_MESSAGE, f"'{kind}.{name}' must be a {json_type}", take_id, request_id)
        allowed = ENUMS.get((kind, name))
        if allowed and value not in allowed:
            raise ProtocolError(
                BAD_MESSAGE, f"'{kind}.{name}' must be one of {', '.join(allowed)}", take_id, request_id
            )
        if name in ("take_id", "request_id") and not 0 < len(value) <= MAX_ID_CHARS:
            raise ProtocolError(BAD_MESSAGE, f"'{name}' must be 1 to {MAX_ID_CHARS} characters", take_id)
        if name == "data":
            value = _decode_base64(value, kind, take_id)
        values[name] = value
    if kind == "ask" and not 0 < len(values["question"]) <= MAX_QUESTION_CHARS:
        raise ProtocolError(BAD_MESSAGE, f"a question must be 1 to {MAX_QUESTION_CHARS} characters",
                            take_id, request_id)
    return _CLASSES[kind](**values)


def _decode_base64(value: str, kind: str, take_id: str | None) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(BAD_MESSAGE, f"'{kind}.data' is not valid base64", take_id) from exc


def ready(server: str, model: str | None, limits: dict[str, Any]) -> dict[str, Any]:
    """Answer to hello."""
    return {"type": "ready", "protocol": PROTOCOL_VERSION, "server": server, "model": model,
            "capabilities": CAPABILITIES, "limits": limits}


def progress(take_id: str, stage: str, fraction: float) -> dict[str, Any]:
    """A progress step of an assess request."""
    return {"type": "progress", "take_id": take_id, "stage": stage, "fraction": round(float(fraction), 3)}


def report(take_id: str, report_dict: dict[str, Any]) -> dict[str, Any]:
    """The PerformanceReport JSON of a take."""
    return {"type": "report", "take_id": take_id, "report": report_dict}


def assessment(take_id: str, result: Assessment) -> dict[str, Any]:
    """The model's assessment of a take."""
    return {"type": "assessment", "take_id": take_id, **result.to_dict()}


def answer_delta(request_id: str, take_id: str, text: str) -> dict[str, Any]:
    """A streamed piece of an answer."""
    return {"type": "answer.delta", "request_id": request_id, "take_id": take_id, "text": text}


def answer(request_id: str, take_id: str, text: str) -> dict[str, Any]:
    """The complete answer."""
    return {"type": "answer", "request_id": request_id, "take_id": take_id, "text": text}


def error(code: str, message: str, take_id: str | None = None, request_id: str | None = None) -> dict[str, Any]:
    """An error; the connection stays open."""
    msg: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if take_id is not None:
        msg["take_id"] = take_id
    if request_id is not None:
        msg["request_id"] = request_id
    return msg


def _schema_for(kind: str, fields: dict[str, tuple[str, bool]]) -> dict[str, Any]:
    props: dict[str, Any] = {"type": {"const": kind}}
    for name, (json_type, _) in fields.items():
        prop: dict[str, Any] = {"type": json_type.split("|")}
        if len(prop["type"]) == 1:
            prop["type"] = json_type
        if (kind, name) in ENUMS:
            prop["enum"] = list(ENUMS[(kind, name)])
        if name in ("take_id", "request_id"):
            prop.update(minLength=1, maxLength=MAX_ID_CHARS)
        if name == "data":
            prop["contentEncoding"] = "base64"
        props[name] = prop
    required = ["type"] + [n for n, (_, req) in fields.items() if req]
    return {"type": "object", "properties": props, "required": required}


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every client and server text message."""
    client = {k: _schema_for(k, f) for k, f in CLIENT_FIELDS.items()}
    server = {k: _schema_for(k, f) for k, f in SERVER_FIELDS.items()}
    server["assessment"]["properties"]["bar_comments"]["items"] = {
        "type": "object",
        "properties": {"bar": {"type": "integer"}, "text": {"type": "string"}},
        "required": ["bar", "text"],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://llaqo.example/protocol/1/schema.json",
        "title": "LLaQo server protocol, version 1",
        "$defs": {**{f"client:{k}": v for k, v in client.items()}, **{f"server:{k}": v for k, v in server.items()}},
        "oneOf": [{"$ref": f"#/$defs/client:{k}"} for k in client] + [{"$ref": f"#/$defs/server:{k}"} for k in server],
    }


if __name__ == "__main__":
    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
