"""Who may talk to the server and which files it touches: one place for every transport.

* `refusal(host, origin, policy)`: the HTTP-level check every transport calls before it serves a
  request (the WebSocket handshake here, a loopback HTTP endpoint likewise). Browser pages are refused
  unless their Origin was allowed (`--allow-origin`), and on loopback the Host header must name this
  machine (DNS rebinding). Native clients send no Origin and pass.
* `token_ok`: the shared secret, compared in constant time.
* `FileGate`: paths named by clients (OSC) are read only inside folders the user named, opened one
  component at a time without following any symlink, with one message for every refusal (it never
  says whether a path exists).
* `private_results_dir` / `write_private`: results go to a folder only this user can enter, written
  with exclusive creation (never through a planted file or symlink).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from llaqo_model.errors import LlaqoError

ANY_ORIGIN = "*"
LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}
MAX_CLIENT_FILE_BYTES = 1 << 30  # a file named over OSC is read into memory: 1 GiB is a 90-minute FLAC


@dataclass(frozen=True)
class AccessPolicy:
    """What the HTTP-level check needs to know about the server."""

    bind_host: str
    allow_origins: tuple[str, ...] = ()


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name, no port) only reaches this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """'127.0.0.1:8765' → '127.0.0.1', '[::1]:8765' → '::1', 'localhost' → 'localhost'."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def refusal(host: str | None, origin: str | None, policy: AccessPolicy) -> str | None:
    """Why an HTTP request (a WebSocket handshake, an HTTP call) must be refused with 403, or None.

    `origin` is None for native clients (DAW bridges, scripts, wscat), which are let through; a browser
    always sends one, and it must be one the user allowed. A server bound to loopback also requires the
    Host header to name this machine, so a page on a rebinding domain cannot reach it through the browser.
    """
    if origin is not None and ANY_ORIGIN not in policy.allow_origins and origin not in policy.allow_origins:
        return f"Origin {origin[:100]} is not allowed (llaqo serve --allow-origin ORIGIN allows one)"
    if is_loopback(policy.bind_host) and not (host and is_loopback(_host_name(host.strip()))):
        return "the Host header must be a loopback name for this machine (localhost, 127.0.0.1 or ::1)"
    return None


def token_ok(given: str | None, expected: str | None) -> bool:
    """Whether the client's token is the server's (always true when the server has none)."""
    if not expected:
        return True
    return hmac.compare_digest((given or "").encode(), expected.encode())


class FileGate:
    """Reads files named by clients, only inside `roots` and never through a symlink."""

    def __init__(self, roots: list[Path]) -> None:
        # each root as named (matched lexically) and as it really is (opened from)
        self.roots = [(Path(os.path.abspath(r)), Path(os.path.realpath(r))) for r in roots]

    def read(self, path: str, error: type[LlaqoError]) -> bytes:
        """The file's bytes; `error` with the same message for a path outside the roots, a symlink,
        a missing file or anything else that is not a readable regular file."""
        name = Path(path).name[:80]
        refused = error(f"cannot read {name}: the server reads only regular files inside the folders it was "
                        "given (llaqo serve --files-from DIR), never through a symlink")
        parts = self._parts(path)
        if parts is None:
            raise refused
        root, rest = parts
        try:
            fd = _open_beneath(root, rest)
        except OSError:
            raise refused from None
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_CLIENT_FILE_BYTES:
                raise refused
            return f.read(MAX_CLIENT_FILE_BYTES + 1)

    def _parts(self, path: str) -> tuple[Path, list[str]] | None:
        """(root, components below it) for an absolute path lexically inside a root, else None."""
        if not os.path.isabs(path) or "\0" in path:
            return None
        normal = Path(os.path.normpath(path))
        for named, real in self.roots:
            for root in (named, real):
                if normal != root and normal.is_relative_to(root):
                    return real, list(normal.relative_to(root).parts)
        return None


def _open_beneath(root: Path, parts: list[str]) -> int:
    """Open root/parts… for reading, each component with O_NOFOLLOW (a symlink anywhere fails)."""
    nofollow = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | nofollow)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | nofollow, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        return os.open(parts[-1], os.O_RDONLY | os.O_NONBLOCK | nofollow, dir_fd=fd)
    finally:
        os.close(fd)


def private_results_dir(named: Path | None = None) -> Path:
    """The folder OSC results are written to: `named`, or a per-user folder in the temp dir (0700).

    Refuses a folder that is a symlink or belongs to another user; the default one must also be
    closed to others (a folder planted by someone else under the predictable name is not used).
    """
    path = Path(named) if named else Path(tempfile.gettempdir()) / f"llaqo-results-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, parents=named is not None)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise LlaqoError(f"will not write results in {path}: it is not a folder of this user (or is a symlink)")
    if named is None and info.st_mode & 0o077:
        raise LlaqoError(f"will not write results in {path}: other users can open it (expected mode 0700)")
    return path


def write_private(folder: Path, stem: str, text: str) -> Path:
    """Write `text` to a new file `stem`-N.json in `folder` (exclusive creation, mode 0600); its path."""
    for attempt in range(1000):
        path = folder / f"{stem}-{attempt}.json" if attempt else folder / f"{stem}.json"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return path
    raise LlaqoError(f"could not create a new result file for {stem} in {folder}")
