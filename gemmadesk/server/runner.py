"""Running the server: uvicorn (HTTP/1.1 through h11, asyncio) on a socket we bind ourselves.

:class:`ServerThread` runs it beside the caller (tests, benchmarks, the app in phase 2);
``gemmadesk-cli serve`` runs the same in the foreground. :func:`check_bind` is the rule for addresses:
loopback by default; any other address needs ``allow_network`` and an API key.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8089


class BindRefused(ValueError):
    """The address may not be used with these options (message: one sentence with the next step)."""


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None, allow_network: bool) -> None:
    if is_loopback(host):
        return
    if not allow_network:
        raise BindRefused(
            f"Listening on {host} would let other machines use the model; to do that on purpose, add "
            "--allow-network and --api-key KEY."
        )
    if not api_key:
        raise BindRefused(f"Listening on {host} needs an API key so that only your clients get in: add --api-key KEY.")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: a free port chosen by the system)."""
    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_server(app: Any) -> Any:
    import uvicorn

    # Named statically (uvicorn imports them from strings) so that the PyInstaller bundle includes them.
    import uvicorn.lifespan.off  # noqa: F401
    import uvicorn.loops.asyncio  # noqa: F401
    from uvicorn.protocols.http.h11_impl import H11Protocol

    config = uvicorn.Config(
        app,
        http=H11Protocol,
        loop="asyncio",
        ws="none",
        lifespan="off",
        interface="asgi3",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=5,
        limit_concurrency=64,  # more open connections than that get 503 at once
        h11_max_incomplete_event_size=64 * 1024,  # request line and headers
        server_header=False,
    )
    return uvicorn.Server(config)


class ServerThread:
    """The server on a background thread: ``with ServerThread(app) as s: ... s.base_url``."""

    def __init__(self, app: Any, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self._sock = bind_socket(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self._server = uvicorn_server(app)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="gemmadesk-http", daemon=True
        )

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.01)):
            if self._server.started or not self._thread.is_alive():
                break
            deadline.wait(0.01)
        if not self._server.started:
            raise RuntimeError("the HTTP server did not start")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
