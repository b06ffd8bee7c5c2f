"""LLaQo for REAPER (Python ReaScript): assess the selected item's audio with a running `llaqo serve`.

Install: Actions > Show action list > New action > Load ReaScript…, pick this file (REAPER needs
Python enabled under Preferences > Plug-ins > ReaScript). Select a recorded item and run the action.

What it does, honestly:
* sends the selected take's *source file* to the server as `/llaqo/assess/file` over OSC
  (UDP, localhost:9000) — the whole file, without item trims, fades or FX. To assess exactly what
  you hear, glue or render the item first (Item > Glue items) and select the result;
* if a score (.musicxml, .mxl, .mid) whose name starts with the project's name lies in the project
  folder, sends its path too;
* listens on a free UDP port (told to the server with `/llaqo/reply`) and prints the replies —
  ratings, feedback, bar comments, the path of the full JSON result — to REAPER's console, polling
  with `RPR_defer` so REAPER stays responsive.

Only the Python standard library is used (REAPER's embedded Python may lack python-osc), so this
file carries a minimal OSC 1.0 encoder/decoder for int32, float32 and string arguments.
"""

from __future__ import annotations

import os
import socket
import struct
import time

SERVER = ("127.0.0.1", 9000)
TIMEOUT_S = 600.0
SCORE_SUFFIXES = (".musicxml", ".mxl", ".mid", ".midi")


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def osc_message(address: str, *args: int | float | str) -> bytes:
    """Encode one OSC message (int → i, float → f, str → s)."""
    tags, payload = ",", b""
    for arg in args:
        if isinstance(arg, int):
            tags, payload = tags + "i", payload + struct.pack(">i", arg)
        elif isinstance(arg, float):
            tags, payload = tags + "f", payload + struct.pack(">f", arg)
        else:
            tags, payload = tags + "s", payload + _pad(str(arg).encode() + b"\0")
    return _pad(address.encode() + b"\0") + _pad(tags.encode() + b"\0") + payload


def _read_string(data: bytes, i: int) -> tuple[str, int]:
    end = data.index(b"\0", i)
    return data[i:end].decode("utf-8", "replace"), (end + 4) & ~3


def parse_osc(data: bytes) -> tuple[str, list[int | float | str]]:
    """Decode one OSC message with i, f and s arguments."""
    address, i = _read_string(data, 0)
    tags, i = _read_string(data, i)
    args: list[int | float | str] = []
    for tag in tags[1:]:
        if tag == "i":
            args.append(struct.unpack(">i", data[i : i + 4])[0])
            i += 4
        elif tag == "f":
            args.append(struct.unpack(">f", data[i : i + 4])[0])
            i += 4
        elif tag == "s":
            value, i = _read_string(data, i)
            args.append(value)
    return address, args


def describe(address: str, args: list) -> str | None:
    """One console line per reply (None for ones not worth printing)."""
    if address == "/llaqo/rating":
        return f"  {args[0]}: {args[1]:.0f}/5"
    if address == "/llaqo/feedback":
        return f"Feedback: {args[0]}"
    if address == "/llaqo/bar":
        return f"  bar {args[0]}: {args[1]}"
    if address == "/llaqo/result/file":
        return f"Full result (report + assessment): {args[0]}"
    if address == "/llaqo/error":
        return f"LLaQo error [{args[0]}]: {args[1]}"
    if address == "/llaqo/progress":
        return f"... {args[0]}"
    return None


def find_score(project_dir: str, project_name: str) -> str | None:
    """A score in the project folder whose name starts with the project's name."""
    stem = os.path.splitext(project_name)[0].lower()
    for name in sorted(os.listdir(project_dir or ".")):
        if name.lower().endswith(SCORE_SUFFIXES) and (not stem or name.lower().startswith(stem)):
            return os.path.join(project_dir, name)
    return None


def main() -> None:
    """REAPER entry point."""
    if RPR_CountSelectedMediaItems(0) < 1:  # noqa: F821 (REAPER API)
        RPR_ShowMessageBox("Select the recorded item to assess.", "LLaQo", 0)  # noqa: F821
        return
    take = RPR_GetActiveTake(RPR_GetSelectedMediaItem(0, 0))  # noqa: F821
    source = RPR_GetMediaItemTake_Source(take)  # noqa: F821
    audio_path = RPR_GetMediaSourceFileName(source, "", 4096)[1]  # noqa: F821
    project_dir = RPR_GetProjectPath("", 4096)[0]  # noqa: F821
    project_name = RPR_GetProjectName(0, "", 4096)[1]  # noqa: F821
    score = find_score(os.path.dirname(project_dir) or project_dir, project_name)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    sock.sendto(osc_message("/llaqo/reply", sock.getsockname()[1]), SERVER)
    args = (audio_path, score) if score else (audio_path,)
    sock.sendto(osc_message("/llaqo/assess/file", *args), SERVER)
    RPR_ShowConsoleMsg(f"LLaQo: assessing {audio_path}" + (f" against {score}" if score else "") + "\n")  # noqa: F821
    _poll.state = (sock, time.monotonic() + TIMEOUT_S)
    _poll()


def _poll() -> None:
    sock, deadline = _poll.state
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            break
        address, args = parse_osc(data)
        line = describe(address, args)
        if line:
            RPR_ShowConsoleMsg(line + "\n")  # noqa: F821
        finished = address == "/llaqo/result/file" or (address == "/llaqo/error" and args[0] != "score_mismatch")
        if finished:
            sock.close()
            return
    if time.monotonic() > deadline:
        RPR_ShowConsoleMsg("LLaQo: no result (is `llaqo serve` running?)\n")  # noqa: F821
        sock.close()
        return
    RPR_defer("_poll()")  # noqa: F821


if "RPR_GetSelectedMediaItem" in globals():
    main()
