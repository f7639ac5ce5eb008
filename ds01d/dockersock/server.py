"""The thin server around :func:`ds01d.dockersock.judge.judge`: reads requests with h11,
names the caller by ``SO_PEERCRED``, looks up what the judge needs, forwards exactly what
was judged to dockerd, and pipes answers back (streams as they come; exec and attach
connections, once Docker takes them over, byte for byte).

Each connection is served on its own; one caller's slow or hostile connection holds nobody
else up. A refusal is Docker's error body with one reason (the ``docker`` CLI prints it), a
journal entry and a count in ``ds01_socket_requests_total``. Docker not answering is a
clear error to the client, at once, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import h11

from ds01d.core import model as m
from ds01d.dockersock import replies
from ds01d.dockersock.api import (
    MAX_JSON,
    STREAM,
    Head,
    Refuse,
    Request,
    parse_head,
    with_body,
)
from ds01d.dockersock.judge import Allow, AsWant, Caller, Forward, Owned, judge
from ds01d.paths import Paths

log = logging.getLogger("ds01-socket")
CHUNK = 65536
MAX_STREAM = 16 << 30
"""Largest streamed request body (a build context): 16 GiB."""
MAX_DISCARD = 1 << 30
"""Most of a refused request's streamed body read (so the client sees the reason)."""
MAX_REPLY = 64 << 20
"""Largest answer read whole to be rewritten (a container listing)."""
MAX_CONNECTIONS_PER_UID = 64
"""Open connections one caller may hold (docker, VS Code and a few terminals need a dozen);
beyond, a new one is answered 429 and closed: one user cannot use up the server."""
MAX_LISTED = 1024
"""Entries of a user's want folder looked at (as ds01d reads at most that many)."""
CONNECT_TIMEOUT_S = 5.0
HEAD_TIMEOUT_S = 30.0
"""How long a client may take to send a request's line and headers."""


class Upstream(Exception):
    """Docker could not be reached or broke off."""


@dataclass
class Counts:
    """Requests by outcome (``allowed``, ``refused``, ``want``, ``error``)."""

    by_outcome: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str) -> None:
        self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1


def peer(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end (the kernel's word, not the client's)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def error_body(reason: str) -> bytes:
    return json.dumps({"message": reason}).encode() + b"\n"


class Client:
    """One HTTP exchange with dockerd over its Unix socket (h11 as the client)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)

    async def open(self) -> None:
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.path), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as e:
            raise Upstream(f"Docker is not answering at {self.path} ({e})") from None

    async def send(self, event: Any) -> None:
        assert self.writer is not None
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def next_event(self) -> Any:
        assert self.reader is not None
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.reader.read(CHUNK)
            if not data and self.conn.their_state is h11.SEND_RESPONSE:
                raise Upstream("Docker closed the connection without answering")
            self.conn.receive_data(data)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def request_headers(fwd: Forward, *, length: int | None) -> list[tuple[str, str]]:
    headers = [("Host", "docker"), *fwd.headers]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    elif fwd.stream_body:
        headers.append(("Transfer-Encoding", "chunked"))
    if fwd.upgrade:
        headers += [("Connection", "Upgrade"), ("Upgrade", "tcp")]
    return [(k, v) for k, v in headers if not (k == "content-type" and fwd.body is not None)] + (
        [("Content-Type", "application/json")] if fwd.body is not None else [])


def target(fwd: Forward) -> str:
    return fwd.path + (f"?{urlencode(fwd.query)}" if fwd.query else "")


async def docker_json(upstream: str, path: str) -> tuple[int, Any]:
    """A GET to Docker, its status and JSON body (the server's own look-ups)."""
    client = Client(upstream)
    await client.open()
    try:
        await client.send(h11.Request(method="GET", target=path, headers=[("Host", "docker")]))
        await client.send(h11.EndOfMessage())
        response = await client.next_event()
        body = await _read_all(client)
        try:
            return response.status_code, json.loads(body or b"null")
        except ValueError:
            return response.status_code, None
    finally:
        client.close()


def _filters(label: str) -> str:
    return urlencode({"filters": json.dumps({"label": [label]})})


@dataclass
class Looker:
    """What the judge needs about the caller's objects, looked up for one request."""

    upstream: str
    paths: Paths

    async def containers(self, user: str) -> tuple[m.Container, ...]:
        query = _filters(f"{m.LABEL_USER}={user}")
        status, found = await docker_json(self.upstream, f"/containers/json?all=1&{query}")
        if status != 200 or not isinstance(found, list):
            raise Upstream(f"Docker could not list containers ({status})")
        epoch = datetime.fromtimestamp(0, UTC)
        return tuple(m.Container(
            id=str(c.get("Id", "")), name=str((c.get("Names") or ["/"])[0]).lstrip("/"),
            image=str(c.get("Image", "")), labels=dict(c.get("Labels") or {}),
            state=str(c.get("State", "")), devices=(), created_at=epoch) for c in found
            if (c.get("Labels") or {}).get(m.LABEL_USER) == user)

    async def volumes(self, user: str) -> frozenset[str]:
        status, found = await docker_json(self.upstream,
                                          f"/volumes?{_filters(f'{m.LABEL_USER}={user}')}")
        if status != 200 or not isinstance(found, dict):
            raise Upstream(f"Docker could not list volumes ({status})")
        return frozenset(str(v["Name"]) for v in found.get("Volumes") or []
                         if (v.get("Labels") or {}).get(m.LABEL_USER) == user)

    async def image(self, ref: str) -> dict[str, str] | None:
        status, found = await docker_json(self.upstream, f"/images/{ref}/json")
        if status == 404:
            return None
        if status != 200 or not isinstance(found, dict):
            raise Upstream(f"Docker could not look at image {ref} ({status})")
        return dict((found.get("Config") or {}).get("Labels") or {})

    async def exec_container(self, exec_id: str) -> str | None:
        status, found = await docker_json(self.upstream, f"/exec/{exec_id}/json")
        return str(found.get("ContainerID")) if status == 200 and isinstance(found, dict) \
            else None

    def want(self, user: str, name: str) -> Any:
        """The user's want ``name`` as ds01d would read it (their folder, without following
        links or blocking, within the bounds of user files), or None."""
        from ds01d.config.want import read_want
        from ds01d.errors import ConfigError

        try:
            folder = os.open(os.path.join(self.paths.under("var/lib/ds01/wants"), user),
                             os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_DIRECTORY)
        except OSError:
            return None
        try:
            return read_want(folder, user, name)
        except (ConfigError, OSError, ValueError):
            return None
        finally:
            os.close(folder)

    def wants(self, user: str) -> frozenset[str]:
        """Names of the user's wants (their folder is theirs: read through a descriptor,
        without following a link, the first MAX_LISTED entries only)."""
        spool = self.paths.under("var/lib/ds01/wants")
        try:
            fd = os.open(os.path.join(spool, user),
                         os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return frozenset()
        names = []
        try:
            with os.scandir(fd) as entries:
                for n, entry in enumerate(entries):
                    if n >= MAX_LISTED:
                        break
                    if entry.name.endswith(".yaml") and not entry.name.startswith("."):
                        names.append(entry.name[:-5])
        except OSError:
            pass
        finally:
            os.close(fd)
        return frozenset(names)


def _image_refs(r: Request) -> list[str]:
    """Images whose owner the judge needs: a create's image, names an image would take."""
    def full(ref: str) -> str:
        return ref if ":" in ref.rsplit("/", 1)[-1] or "@" in ref else f"{ref}:latest"

    refs: list[str] = []
    if r.route == "containers.create" and r.body is not None and isinstance(
            r.body.get("Image"), str):
        refs.append(r.body["Image"])
    if r.route in ("image.tag", "image.remove", "image.push"):
        refs.append(r.param)
    if r.route == "image.tag" and r.q("repo"):
        refs.append(f"{r.q('repo')}:{r.q('tag') or 'latest'}")
    if r.route == "build":
        refs += [full(t) for t in (r.q("t") or "").split(",") if t]
    if r.route == "commit" and r.q("repo"):
        refs.append(f"{r.q('repo')}:{r.q('tag') or 'latest'}")
    return refs[:16]


def _bind_sources(r: Request) -> list[str]:
    from ds01d.config.settings import bind_sources
    from ds01d.dockersock.create import Refused, read_create

    try:
        return list(bind_sources(read_create(r.body).settings))[:64]
    except Refused:
        return []


async def _none(value: Any) -> Any:
    return value


async def facts(look: Looker, r: Request, caller: Caller) -> Owned:
    """Everything :func:`judge` may consult for ``r`` (only what its route needs)."""
    if caller.admin:
        return Owned()
    needs_containers = r.route.startswith(("container.", "exec.")) or r.route in (
        "containers.create", "commit")
    refs = _image_refs(r)
    # the look-ups are independent: asked of Docker at once, not one after another
    found: list[Any] = await asyncio.gather(
        look.containers(caller.user) if needs_containers else _none(()),
        look.volumes(caller.user) if r.route.startswith("volume.") else _none(frozenset()),
        look.exec_container(r.param) if r.route.startswith("exec.") else _none(None),
        *(look.image(ref) for ref in refs), return_exceptions=True)
    for f in found:  # each one awaited to its end: the first failure is the answer
        if isinstance(f, BaseException):
            raise f
    containers: tuple[m.Container, ...] = found[0]
    volumes: frozenset[str] = found[1]
    execs = {r.param: found[2]} if found[2] else {}
    images = dict(zip(refs, found[3:], strict=True))
    paths: dict[str, str | None] = {}
    wants: frozenset[str] = frozenset()
    want = None
    if r.route in ("container.start", "container.restart"):
        from ds01d.dockersock.judge import resolve

        c = resolve(r.param, Owned(containers=containers), caller.user)
        if isinstance(c, m.Container) and c.managed and c.want_name:
            want = look.want(caller.user, c.want_name)
    if r.route == "containers.create":
        from ds01d.userpaths import owned_path_problem

        paths = {p: owned_path_problem(p, uid=caller.uid, home=caller.home)
                 for p in _bind_sources(r)}
        wants = look.wants(caller.user)
    return Owned(containers=containers, volumes=volumes, images=images, execs=execs,
                 paths=paths, wants=wants, want=want, fresh_name=f"c-{secrets.token_hex(4)}",
                 now=datetime.now(UTC).replace(microsecond=0))


CallerOf = Callable[[int, int], Caller | Refuse]
WantHandler = Callable[[AsWant, Caller], Awaitable[tuple[int, bytes]]]


@dataclass
class Server:
    """Serves one listening socket; each connection in its own task (held here: asyncio
    keeps only weak references to tasks)."""

    upstream: str
    look: Looker
    caller_of: CallerOf
    want_handler: WantHandler
    counts: Counts = field(default_factory=Counts)
    refused: Callable[[Caller | None, int, str, str], None] = lambda c, uid, what, why: None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    open_by_uid: dict[int, int] = field(default_factory=dict)

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The listener's callback: the connection is served in a task kept until done."""
        task = asyncio.get_running_loop().create_task(self.serve_connection(reader, writer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def serve_connection(self, reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = -1
        try:
            _, uid, gid = peer(sock)
            self.open_by_uid[uid] = self.open_by_uid.get(uid, 0) + 1
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 << 10)
            if self.open_by_uid[uid] > MAX_CONNECTIONS_PER_UID:
                await self._too_many(conn, reader, writer)
                return
            while await self._one(conn, reader, writer, uid, gid):
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except Exception:  # one connection's failure is logged and ends it, nothing else
            log.exception("connection failed")
        finally:
            if uid in self.open_by_uid:
                self.open_by_uid[uid] -= 1
                if not self.open_by_uid[uid]:
                    del self.open_by_uid[uid]
            with contextlib.suppress(Exception):
                writer.close()

    async def _too_many(self, conn: h11.Connection, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        event = await self._next(conn, reader, HEAD_TIMEOUT_S)
        if isinstance(event, h11.Request):
            self.counts.add("refused")
            await self._reply(conn, writer, 429, error_body(
                f"ds01: you have more than {MAX_CONNECTIONS_PER_UID} connections open to "
                "ds01's Docker socket"), close=True)

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader,
                    timeout: float | None = None) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await asyncio.wait_for(reader.read(CHUNK), timeout)
            conn.receive_data(data)

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                    *events: Any) -> None:
        for event in events:
            data = conn.send(event)
            if data:
                writer.write(data)
        await writer.drain()

    async def _reply(self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int,
                     body: bytes, *, close: bool = False) -> None:
        if status == 204:  # no body, as Docker answers a start
            await self._send(conn, writer, h11.Response(status_code=204, headers=[]),
                             h11.EndOfMessage())
            return
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if close:
            headers.append(("Connection", "close"))
        await self._send(conn, writer, h11.Response(status_code=status, headers=headers),
                         h11.Data(data=body), h11.EndOfMessage())

    async def _one(self, conn: h11.Connection, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter, uid: int, gid: int) -> bool:
        """Serve one request; False: the connection is done."""
        event = await self._next(conn, reader, HEAD_TIMEOUT_S)
        if not isinstance(event, h11.Request):
            return False
        method, raw_target = event.method.decode(), event.target.decode("latin-1")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
        what = f"{method} {raw_target.partition('?')[0]}"
        head = parse_head(method, raw_target, headers)
        caller = self.caller_of(uid, gid)
        if isinstance(head, Refuse) or isinstance(caller, Refuse):
            refusal = head if isinstance(head, Refuse) else caller
            assert isinstance(refusal, Refuse)
            return await self._refuse(conn, writer, caller, (uid, what), refusal, close=True)
        request = await self._request(conn, reader, head)
        if isinstance(request, Refuse):
            return await self._refuse(conn, writer, caller, (uid, what), request, close=True)
        try:
            verdict = judge(request, caller, await facts(self.look, request, caller))
        except Upstream as e:
            self.counts.add("error")
            await self._reply(conn, writer, 503, error_body(f"ds01: {e}"), close=True)
            return False
        if isinstance(verdict, Refuse):
            if request.streamed:  # read what the client is sending, so it sees the reason
                await self._discard(conn, reader)
            return await self._refuse(conn, writer, caller, (uid, what), verdict,
                                      close=request.streamed)
        if isinstance(verdict, AsWant):
            self.counts.add("want")
            try:
                status, body = await self.want_handler(verdict, caller)
            except Upstream as e:
                status, body = 503, error_body(f"ds01: {e}")
            await self._reply(conn, writer, status, body)
            return conn.our_state is h11.DONE and conn.their_state is h11.DONE
        if verdict.note:
            log.info("%s", verdict.note)
        if verdict.drop_want:
            from ds01d.dockersock import wantfile

            await asyncio.to_thread(wantfile.drop, self.look.paths.under("var/lib/ds01/wants"),
                                    caller.user, verdict.drop_want, uid=caller.uid,
                                    gid=caller.gid)
        self.counts.add("allowed")
        return await self._forward(conn, reader, writer, verdict, caller)

    async def _refuse(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                      caller: Caller | Refuse, asked: tuple[int, str], refusal: Refuse, *,
                      close: bool) -> bool:
        uid, what = asked
        self.counts.add("refused")
        who = caller if isinstance(caller, Caller) else None
        self.refused(who, uid, what, refusal.reason)
        message = refusal.reason if refusal.status == 404 else f"ds01: {refusal.reason}"
        await self._reply(conn, writer, refusal.status, error_body(message), close=close)
        return not close and conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _request(self, conn: h11.Connection, reader: asyncio.StreamReader,
                       head: Head) -> Request | Refuse:
        if head.route.body == STREAM:
            return with_body(head, None)
        body = b""
        while True:
            event = await self._next(conn, reader, HEAD_TIMEOUT_S)
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_JSON:
                    return Refuse(f"the body is larger than {MAX_JSON} bytes", 413)
            elif isinstance(event, h11.EndOfMessage):
                return with_body(head, body)
            else:
                return Refuse("the request ended early", 400)

    async def _forward(self, conn: h11.Connection, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter, verdict: Allow, caller: Caller) -> bool:
        fwd = verdict.forward
        client = Client(self.upstream)
        try:
            await client.open()
            body = None if fwd.body is None else json.dumps(fwd.body).encode()
            length = len(body) if body is not None else (None if fwd.stream_body else 0)
            await client.send(h11.Request(method=fwd.method, target=target(fwd),
                                          headers=request_headers(fwd, length=length)))
            if body:
                await client.send(h11.Data(data=body))
            if fwd.stream_body:
                await self._pipe_body(conn, reader, client)
            await client.send(h11.EndOfMessage())
            response = await client.next_event()
        except Upstream as e:
            client.close()
            self.counts.add("error")
            await self._reply(conn, writer, 503, error_body(f"ds01: {e}"), close=True)
            return False
        except (OSError, h11.ProtocolError) as e:
            client.close()
            await self._reply(conn, writer, 502, error_body(f"ds01: Docker broke off ({e})"),
                              close=True)
            return False
        try:
            if isinstance(response, h11.InformationalResponse) and response.status_code == 101:
                await self._switch(conn, reader, writer, client, response)
                return False
            await self._relay(conn, writer, client, response, reply=(fwd.reply, caller.user))
        finally:
            client.close()
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _discard(self, conn: h11.Connection, reader: asyncio.StreamReader) -> None:
        """The body of a refused streamed request, read and dropped (up to MAX_DISCARD)."""
        read = 0
        with contextlib.suppress(TimeoutError, h11.ProtocolError, ConnectionError):
            while read < MAX_DISCARD:
                event = await self._next(conn, reader, HEAD_TIMEOUT_S)
                if not isinstance(event, h11.Data):
                    return
                read += len(event.data)

    async def _pipe_body(self, conn: h11.Connection, reader: asyncio.StreamReader,
                         client: Client) -> None:
        sent = 0
        while True:
            event = await self._next(conn, reader)
            if isinstance(event, h11.Data):
                sent += len(event.data)
                if sent > MAX_STREAM:
                    raise Upstream(f"the request body is larger than {MAX_STREAM} bytes")
                await client.send(h11.Data(data=event.data))
            else:
                return

    async def _relay(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                     client: Client, response: Any, *, reply: tuple[str, str]) -> None:
        reply_kind, user = reply
        hop = {b"connection", b"keep-alive", b"transfer-encoding"}
        headers = [(k, v) for k, v in response.headers if k.lower() not in hop]
        if reply_kind in ("containers", "container", "volumes", "volume", "network") and \
                200 <= response.status_code < 300:
            body = await _read_all(client)
            body = replies.rewrite(reply_kind, body, user)
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await self._send(conn, writer, h11.Response(status_code=response.status_code,
                                                        headers=headers),
                             h11.Data(data=body), h11.EndOfMessage())
            return
        lines = reply_kind in ("events", "stats") and 200 <= response.status_code < 300
        if lines:
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        await self._send(conn, writer, h11.Response(status_code=response.status_code,
                                                    headers=headers))
        pending = b""
        while True:
            event = await client.next_event()
            if isinstance(event, h11.Data):
                data = event.data
                if lines:
                    pending += data
                    parts = pending.split(b"\n")
                    pending = parts.pop()
                    data = b"".join(replies.stream_line(reply_kind, x, user) for x in parts
                                    if x.strip())
                if data:
                    await self._send(conn, writer, h11.Data(data=data))
            else:
                break
        if lines and pending.strip():
            await self._send(conn, writer, h11.Data(data=replies.stream_line(
                reply_kind, pending, user)))
        await self._send(conn, writer, h11.EndOfMessage())

    async def _switch(self, conn: h11.Connection, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter, client: Client, response: Any) -> None:
        """Docker took the connection over (exec, attach): pipe bytes both ways."""
        await self._send(conn, writer, h11.InformationalResponse(
            status_code=101, headers=response.headers))
        assert client.reader is not None and client.writer is not None
        down, _ = client.conn.trailing_data
        up, _ = conn.trailing_data
        if down:
            writer.write(down)
        if up:
            client.writer.write(up)
        await asyncio.gather(_copy(reader, client.writer, half_close=True),
                             _copy(client.reader, writer, half_close=False))


async def _read_all(client: Client) -> bytes:
    body = b""
    while True:
        event = await client.next_event()
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_REPLY:
                raise Upstream("Docker's answer is too large")
        else:
            return body


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter, *,
                half_close: bool) -> None:
    try:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if half_close and dst.can_write_eof():
                dst.write_eof()
            else:
                dst.close()
