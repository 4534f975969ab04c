"""A small, real Hugging Face Hub look-alike on 127.0.0.1, for download tests and benchmarks.

It speaks the parts of the Hub protocol huggingface_hub 2.x and GemmaDesk's downloader use:

- ``HEAD``/``GET /{repo}/resolve/{revision}/{file}`` with ``ETag``, ``X-Linked-Etag`` (the LFS sha256),
  ``X-Linked-Size``, ``X-Repo-Commit``, ``Accept-Ranges`` and ``Range`` → ``206 Content-Range``;
  ``X-Error-Code`` headers (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``) the
  way the Hub sends them. No Xet headers are ever sent, so clients use the plain HTTP path.
- ``GET /api/models/{repo}[/revision/{rev}]`` (model info; ``?blobs=true`` adds each file's size and
  ``lfs.sha256``, what ``model_info(files_metadata=True)`` asks for).
- Optionally (``cdn=True``) LFS resolves answer ``302`` to a "CDN" on a second port, another origin, with
  the metadata headers on the redirect, as huggingface.co does; optionally HTTPS (``tls=(cert, key)``).
- :class:`ForwardProxy`: a small HTTP forward proxy, to check that proxy settings are honoured.

:meth:`HubServer.serve_any` turns it into a hostile mirror that answers any path (``..``, absolute names)
and any commit id, for the path-safety tests.

Faults can be injected per file on ``GET`` requests (see :class:`Fault`): drop the connection at a byte,
stall, answer 5xx/429 with ``Retry-After``, send wrong bytes, end the body early, ignore ``Range``.
Counters record every request and how many body bytes were sent per file, so tests can assert that a
resumed download did not fetch bytes twice.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from gemmadesk.core.catalog import CatalogEntry, ModelFile

VALID_TOKEN = "hf_gemmadesk_test_token"
SEND_BLOCK = 1024 * 1024


@dataclass
class ServedFile:
    repo_id: str
    filename: str
    path: Path
    size: int
    sha256: str
    commit: str
    lfs_etag: bool = True  # send X-Linked-Etag (the sha256); False: a git-style etag only


@dataclass
class Fault:
    """One injected failure for GET requests of a file.

    kind: ``drop`` (close the socket at byte ``at``), ``stall`` (stop sending at ``at`` for ``stall_s``
    seconds, then close), ``status`` (answer ``status`` with optional ``retry_after``), ``corrupt`` (flip
    the byte at offset ``at``), ``truncate`` (announce a body ending at ``at`` and end cleanly there),
    ``ignore_range`` (answer 200 with the whole file even when a Range was asked), ``slow`` (pause
    ``stall_s`` after every 1 MiB block: a slow line).
    ``times``: how many requests it affects (then it is spent); ``-1`` for all. ``method``: ``GET`` or
    ``HEAD`` (only ``status`` faults make sense for HEAD).
    """

    kind: str
    at: int = 0
    status: int = 500
    retry_after: int | None = None
    stall_s: float = 5.0
    times: int = 1
    method: str = "GET"


@dataclass
class RequestLog:
    method: str
    path: str
    range: str | None
    status: int
    authorized: bool


@dataclass
class _State:
    files: dict[tuple[str, str], ServedFile] = field(default_factory=dict)
    gated: set[str] = field(default_factory=set)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    bytes_sent: dict[str, int] = field(default_factory=dict)
    requests: list[RequestLog] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    rate_bps: float | None = None  # cap each response's body rate, like a real line (benchmarks)
    cdn_origin: str | None = None  # LFS resolves redirect to {cdn_origin}/cdn/{sha256}/{filename}
    any_file: ServedFile | None = None  # a hostile mirror: this file for any repo, file name and revision


class HubServer:
    """Threaded local Hub. Use as a context manager; ``endpoint`` is the value for ``HF_ENDPOINT``."""

    def __init__(self, rate_bps: float | None = None, *, cdn: bool = False,
                 tls: tuple[Path, Path] | None = None) -> None:
        """``cdn``: like the real Hub, answer LFS resolves with a 302 to a CDN, here a second port (another
        origin, so clients must not send the Hub token there). ``tls``: (certificate, key) PEM files to
        serve HTTPS with."""
        self.state = _State(rate_bps=rate_bps)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for _ in range(2 if cdn else 1)]
        self._scheme = "https" if tls else "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            for httpd in self._servers:
                httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        if cdn:
            self.state.cdn_origin = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        self._httpd = self._servers[0]
        self._threads = []
        for httpd in self._servers:
            httpd.daemon_threads = True
            self._threads.append(threading.Thread(target=httpd.serve_forever, name="hubserver", daemon=True))

    @property
    def endpoint(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> HubServer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.state.stopping.set()
        for httpd, thread in zip(self._servers, self._threads, strict=True):
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=10)

    # ----- content -----------------------------------------------------------------------------
    def add_file(self, repo_id: str, path: Path, *, filename: str | None = None, commit: str | None = None,
                 sha256: str | None = None, lfs_etag: bool = True) -> ServedFile:
        path = Path(path)
        digest = sha256 or _sha256(path)
        served = ServedFile(
            repo_id=repo_id, filename=filename or path.name, path=path, size=path.stat().st_size,
            sha256=digest, commit=commit or hashlib.sha1(repo_id.encode()).hexdigest(), lfs_etag=lfs_etag,
        )
        with self.state.lock:
            self.state.files[(repo_id, served.filename)] = served
        return served

    def serve_any(self, path: Path, *, commit: str | None = None) -> ServedFile:
        """Behave like a hostile or broken mirror: answer *every* resolve (any repo, any path, any revision,
        ``..`` and absolute names included) and every model-info request with this file. ``commit``: the
        ``X-Repo-Commit`` to send (a mirror may send anything there, e.g. ``../../x``)."""
        served = ServedFile(repo_id="*", filename=Path(path).name, path=Path(path), size=Path(path).stat().st_size,
                            sha256=_sha256(Path(path)), commit=commit or "0" * 40)
        with self.state.lock:
            self.state.any_file = served
        return served

    def gate(self, repo_id: str) -> None:
        """Make a repo gated: only requests with ``Authorization: Bearer VALID_TOKEN`` get in."""
        self.state.gated.add(repo_id)

    def add_fault(self, filename: str, fault: Fault) -> None:
        with self.state.lock:
            self.state.faults.setdefault(filename, []).append(fault)

    def bytes_sent(self, filename: str) -> int:
        with self.state.lock:
            return self.state.bytes_sent.get(filename, 0)

    def gets(self, filename: str) -> list[RequestLog]:
        with self.state.lock:
            return [r for r in self.state.requests if r.method == "GET" and r.path.endswith("/" + filename)]

    def entry_for(self, served: ServedFile, **kwargs: Any) -> CatalogEntry:
        """See :func:`catalog_entry`."""
        return catalog_entry(served, **kwargs)


def catalog_entry(served: ServedFile, *, entry_id: str = "test-tiny", size: str = "E2B",
                  sha_in_catalog: bool = False, mmproj: ServedFile | None = None,
                  revision: str = "main", architecture: str = "gemma4") -> CatalogEntry:
    """A synthetic runnable catalog entry pointing at a served file (tests don't need real sizes).

    The downloader checks what it installs: a ``gemma4`` entry of size ``E2B`` must be a GGUF with that
    architecture and E2B's 35 layers (``tests.support.tiny_gguf`` writes such files); pass
    ``architecture="gemma3"`` for the real Gemma 3 test model, ``""`` for any architecture."""

    def model_file(f: ServedFile) -> ModelFile:
        return ModelFile(f.repo_id, f.filename, f.size, revision, f.sha256 if sha_in_catalog else None)

    return CatalogEntry(
        id=entry_id, size=size, format="Q4_0", publisher="test", runnable=True,
        runner="GemmaDesk (llama.cpp)", repo_id=served.repo_id, file=model_file(served),
        mmproj=model_file(mmproj) if mmproj else None, google_memory_gb=None, licence="test", gated=False,
        architecture=architecture,
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(SEND_BLOCK):
            h.update(block)
    return h.hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _State

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # ----- routing -----------------------------------------------------------------------------
    def _dispatch(self, head: bool) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        anything = self._any(path.rsplit("/", 1)[-1]) if not path.startswith("/api/") else None
        if anything is not None:  # the hostile mirror: whatever path the client ended up asking for
            self._send_file(anything, head, self._take_fault(anything.filename, "HEAD" if head else "GET"))
        elif path.startswith("/cdn/"):
            self._cdn(path, head)
        elif path.startswith("/api/models/"):
            self._model_info(path[len("/api/models/"):], parse_qs(url.query), head)
        elif "/resolve/" in path:
            repo_id, _, rest = path.lstrip("/").partition("/resolve/")
            revision, _, filename = rest.partition("/")
            self._resolve(repo_id, revision, filename, head)
        else:
            self._error(404, "RepoNotFound", "Not found", head)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {VALID_TOKEN}"

    def _log(self, status: int) -> None:
        with self.state.lock:
            self.state.requests.append(
                RequestLog(self.command, unquote(urlsplit(self.path).path), self.headers.get("Range"), status,
                           self._authorized())
            )

    def _error(self, status: int, code: str | None, message: str, head: bool,
               extra: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self._log(status)
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "0" if head else str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _gate_check(self, repo_id: str, head: bool) -> bool:
        if repo_id in self.state.gated and not self._authorized():
            status = 403 if self.headers.get("Authorization") else 401
            self._error(status, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access "
                        "to it and be authenticated to access it. Please log in.", head)
            return False
        return True

    def _repo_files(self, repo_id: str) -> list[ServedFile]:
        with self.state.lock:
            return [f for (r, _), f in self.state.files.items() if r == repo_id]

    def _any(self, filename: str) -> ServedFile | None:
        """The hostile mirror's answer for any requested file (named as requested)."""
        with self.state.lock:
            anything = self.state.any_file
        if anything is None:
            return None
        return ServedFile(anything.repo_id, filename, anything.path, anything.size, anything.sha256,
                          anything.commit)

    # ----- endpoints ---------------------------------------------------------------------------
    def _model_info(self, rest: str, query: dict[str, list[str]], head: bool) -> None:
        repo_id, _, revision = rest.partition("/revision/")
        files = self._repo_files(repo_id) or [f for f in [self._any("model.gguf")] if f is not None]
        if not files:
            return self._error(404, "RepoNotFound", "Repository not found", head)
        if not self._gate_check(repo_id, head):
            return None
        blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings: list[dict[str, Any]] = []
        for f in files:
            sib: dict[str, Any] = {"rfilename": f.filename}
            if blobs:
                sib.update(size=f.size, blobId=hashlib.sha1(f.sha256.encode()).hexdigest(),
                           lfs={"size": f.size, "sha256": f.sha256, "pointerSize": 134})
            siblings.append(sib)
        body = json.dumps({"id": repo_id, "modelId": repo_id, "sha": files[0].commit, "private": False,
                           "gated": repo_id in self.state.gated, "siblings": siblings}).encode()
        self._log(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
        return None

    def _resolve(self, repo_id: str, revision: str, filename: str, head: bool) -> None:
        files = self._repo_files(repo_id)
        if not files:
            return self._error(404, "RepoNotFound", "Repository not found", head)
        if not self._gate_check(repo_id, head):
            return None
        served = next((f for f in files if f.filename == filename), None)
        if revision not in ("main", files[0].commit):
            return self._error(404, "RevisionNotFound", "Invalid rev id", head)
        if served is None:
            return self._error(404, "EntryNotFound", "Entry not found", head)
        if self.state.cdn_origin and served.lfs_etag:
            return self._redirect_to_cdn(served, head)
        fault = self._take_fault(filename, "HEAD" if head else "GET")
        if fault is not None and fault.kind == "status":
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return self._error(fault.status, None, f"injected HTTP {fault.status}", head, extra)
        self._send_file(served, head, fault)
        return None

    def _redirect_to_cdn(self, f: ServedFile, head: bool) -> None:
        """What the Hub does for LFS files: 302 to the CDN, with the file's metadata on the redirect."""
        self._log(302)
        self.send_response(302)
        self.send_header("Location", f"{self.state.cdn_origin}/cdn/{f.sha256}/{f.filename}")
        self.send_header("ETag", f'"{f.sha256}"')
        self.send_header("X-Linked-Etag", f'"{f.sha256}"')
        self.send_header("X-Linked-Size", str(f.size))
        self.send_header("X-Repo-Commit", f.commit)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _cdn(self, path: str, head: bool) -> None:
        sha, _, filename = path[len("/cdn/"):].partition("/")
        with self.state.lock:
            served = next((f for f in self.state.files.values() if f.sha256 == sha), None)
        if served is None:
            return self._error(404, None, "NoSuchKey", head)
        fault = self._take_fault(filename, "HEAD" if head else "GET")
        if fault is not None and fault.kind == "status":
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return self._error(fault.status, None, f"injected HTTP {fault.status}", head, extra)
        self._send_file(served, head, fault)
        return None

    def _take_fault(self, filename: str, method: str) -> Fault | None:
        with self.state.lock:
            faults = [f for f in self.state.faults.get(filename, []) if f.method == method]
            if not faults:
                return None
            fault = faults[0]
            if fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    self.state.faults[filename].remove(fault)
            return fault

    def _send_file(self, f: ServedFile, head: bool, fault: Fault | None) -> None:
        start, end = 0, f.size - 1
        rng = self.headers.get("Range")
        partial = False
        if rng and rng.startswith("bytes=") and not (fault and fault.kind == "ignore_range"):
            first, _, last = rng[len("bytes="):].partition("-")
            start = int(first or 0)
            end = min(int(last), f.size - 1) if last else f.size - 1
            if start >= f.size:
                return self._error(416, None, "Range Not Satisfiable", head,
                                   {"Content-Range": f"bytes */{f.size}"})
            partial = True
        body_end = end + 1
        if fault is not None and fault.kind == "truncate":
            body_end = max(start, min(body_end, fault.at))
        status = 206 if partial else 200
        self._log(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        git_etag = hashlib.sha1(f.sha256.encode()).hexdigest()  # what a non-LFS file would carry
        self.send_header("ETag", f'"{f.sha256}"' if f.lfs_etag else f'"{git_etag}"')
        if f.lfs_etag:
            self.send_header("X-Linked-Etag", f'"{f.sha256}"')
        self.send_header("X-Linked-Size", str(f.size))
        self.send_header("X-Repo-Commit", f.commit)
        self.send_header("Content-Length", str(body_end - start))
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
        self.end_headers()
        if not head:
            self._send_body(f, start, body_end, fault)
        return None

    def _send_body(self, f: ServedFile, start: int, end: int, fault: Fault | None) -> None:
        cut = fault.at if fault is not None and fault.kind in ("drop", "stall") else None
        pos = start
        began = time.monotonic()
        with f.path.open("rb") as fh:
            fh.seek(start)
            while pos < end:
                limit = end if cut is None or cut <= pos else min(end, cut)
                block = fh.read(min(SEND_BLOCK, limit - pos))
                if fault is not None and fault.kind == "corrupt" and pos <= fault.at < pos + len(block):
                    i = fault.at - pos
                    block = block[:i] + bytes([block[i] ^ 0xFF]) + block[i + 1:]
                try:
                    self.wfile.write(block)
                except OSError:
                    return  # the client went away (cancel, pause, killed process)
                pos += len(block)
                with self.state.lock:
                    self.state.bytes_sent[f.filename] = self.state.bytes_sent.get(f.filename, 0) + len(block)
                if fault is not None and fault.kind == "slow":
                    self.state.stopping.wait(fault.stall_s)
                if self.state.rate_bps:
                    ahead = (pos - start) / self.state.rate_bps - (time.monotonic() - began)
                    if ahead > 0:
                        self.state.stopping.wait(ahead)
                if cut is not None and pos >= cut:
                    assert fault is not None
                    if fault.kind == "stall":
                        self.state.stopping.wait(fault.stall_s)
                    self._abort()
                    return

    def _abort(self) -> None:
        """Drop the TCP connection mid-body, as a reset network would."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class ForwardProxy:
    """A minimal HTTP forward proxy on 127.0.0.1 (absolute-URI requests), to check proxies are honoured.

    It relays GET/HEAD to the target with ``http.client`` and streams the answer back; ``seen`` lists
    the URLs it forwarded.
    """

    def __init__(self) -> None:
        self.seen: list[str] = []
        handler = type("ProxyHandler", (_ProxyHandler,), {"proxy": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: ForwardProxy

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:
        self._relay()

    def do_HEAD(self) -> None:
        self._relay()

    def _relay(self) -> None:
        import http.client

        target = urlsplit(self.path)
        self.proxy.seen.append(self.path)
        conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port or 80, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "host")}
        query = f"?{target.query}" if target.query else ""
        conn.request(self.command, target.path + query, headers=headers)
        resp = conn.getresponse()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding"):
                self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            while block := resp.read(SEND_BLOCK):
                self.wfile.write(block)
        conn.close()
