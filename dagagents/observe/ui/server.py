"""Run the web view with uvicorn: blocking (`dagagents ui`) or in a thread beside a run
(`dagagents run --ui`), always on 127.0.0.1 unless a host is asked for."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from dagagents.errors import UserError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def access_token(host: str) -> str | None:
    """A fresh token when serving beyond loopback (printed for the user), else none."""
    return None if host in LOOPBACK else secrets.token_urlsafe(18)


def check_port(host: str, port: int) -> None:
    """One sentence if the port is taken, before uvicorn logs a traceback about it."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"cannot serve the web view on {host}:{port}: {exc.strerror} "
                "(choose another with --port)."
            ) from None


@dataclass
class Running:
    """A web view served from a background thread."""

    server: uvicorn.Server
    thread: threading.Thread
    host: str
    port: int
    token: str | None

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        tail = f"?token={self.token}" if self.token else ""
        return f"http://{shown}:{self.port}/{tail}"

    def run_url(self, run_id: str) -> str:
        tail = f"?token={self.token}" if self.token else ""
        return self.url.split("?")[0] + f"run/{run_id}{tail}"

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def _config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )


def serve_in_thread(
    app: Starlette,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    *,
    any_port_if_taken: bool = False,
) -> Running:
    """Start serving and return once the socket listens (port 0 picks a free one; so does a
    taken port when `any_port_if_taken`, e.g. the default port of `run --ui`)."""
    try:
        check_port(host, port)
    except UserError:
        if not any_port_if_taken:
            raise
        port = 0
    server = uvicorn.Server(_config(app, host, port))
    thread = threading.Thread(target=server.run, name="dagagents-ui", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise UserError(f"the web view could not start on {host}:{port}.")
        time.sleep(0.02)
    bound = port
    for srv in server.servers:
        for sock in srv.sockets:
            bound = sock.getsockname()[1]
    return Running(server, thread, host, bound, token)


def serve(app: Starlette, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until Ctrl-C."""
    check_port(host, port)
    uvicorn.Server(_config(app, host, port)).run()
