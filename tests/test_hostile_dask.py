"""Dask faults: an address that is not a Dask scheduler (issue #23 item 8).

Real loopback servers that are not Dask schedulers: ``plan_backend`` must give a named
:class:`SchedulerUnreachableError` within its connect timeout (bounded waits only).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("distributed")

from lsqmf.runtime.parallel import SchedulerUnreachableError, plan_backend

pytestmark = pytest.mark.cluster


class _Quiet(BaseHTTPRequestHandler):
    timeout = 1.0  # a peer that sends no request line does not block the server
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


def _http() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _silent() -> Iterator[str]:
    """Accepts connections and never sends a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        sock.close()


@pytest.mark.parametrize("server", [_http, _silent], ids=["http-server", "silent-port"])
def test_not_a_scheduler_is_a_named_error(server) -> None:  # type: ignore[no-untyped-def]
    for address in server():
        with pytest.raises(SchedulerUnreachableError,
                           match=rf"cannot reach the Dask scheduler at '{address}' within 2 s"):
            plan_backend(scheduler=address, connect_timeout=2.0)
