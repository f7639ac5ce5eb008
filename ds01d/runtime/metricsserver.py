"""``/metrics`` over HTTP, for Prometheus only.

The metrics name users, their containers and devices: docs/security.md says users see
nothing of each other by name. Listening on 127.0.0.1 keeps other machines out, not this
machine's users, who all have a shell here. So a connection from this host is served only to
root and the users named with ``--metrics-users`` (the Prometheus account), found through the
kernel's table of sockets and their owners (``/proc/net/tcp``); others get 403. A connection
from another host (``--metrics-address 0.0.0.0``) is for the firewall to admit or not.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ds01d.adapters.procfs import tcp_peer_uid

log = logging.getLogger("ds01d")
App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Handler(WSGIRequestHandler):
    def get_environ(self) -> dict[str, Any]:
        env: dict[str, Any] = super().get_environ()
        env["REMOTE_PORT"] = self.client_address[1]
        return env

    def log_message(self, format: str, *args: Any) -> None:
        return  # no access log on stderr (the journal)


def guarded(app: App, *, allowed: frozenset[int], port: int,
            peer_uid: Callable[[int, int], int | None] = tcp_peer_uid) -> App:
    """``app`` for root and ``allowed`` uids only, when the client is on this host."""
    def serve(env: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        if ipaddress.ip_address(str(env.get("REMOTE_ADDR", ""))).is_loopback:
            uid = peer_uid(int(env.get("REMOTE_PORT", 0)), port)
            if uid is None or (uid != 0 and uid not in allowed):
                start("403 Forbidden", [("Content-Type", "text/plain")])
                return [b"ds01 metrics are for root and the users named in --metrics-users\n"]
        return app(env, start)

    return serve


def start(app: App, *, address: str, port: int, allowed: frozenset[int]) -> None:
    """Serve ``app`` on ``address:port`` in a thread (``OSError`` when it cannot listen)."""
    server = make_server(address, port, guarded(app, allowed=allowed, port=port),
                         server_class=_Server, handler_class=_Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
