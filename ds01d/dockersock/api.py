"""Requests on the Docker socket, parsed fully before anything is judged (pure).

Deny by default: a path that is not in :data:`ROUTES` (for any ``/vX.Y`` prefix or none), a
query key the route does not take, a key given twice, a percent-encoded or dotted path, a
JSON body with a duplicate key, an odd casing of a known key (Docker's decoder ignores case),
a non-JSON constant, too deep or too big: each is refused, never guessed at. What is judged
is the parsed value, and what is forwarded is serialised again from it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

MIN_VERSION = (1, 24)
"""Older API versions take a HostConfig in ``/start`` (and other forms): refused."""
MAX_JSON = 1 << 20
"""Largest JSON body read (bytes)."""
MAX_QUERY_FIELDS = 64
PATH_CHARS = re.compile(r"^[A-Za-z0-9._:@/+-]*\Z")
VERSION = re.compile(r"^/v([0-9]{1,2})\.([0-9]{1,3})(/.*)\Z")
FORWARDED_HEADERS = frozenset({"content-type", "x-registry-auth", "x-registry-config",
                               "user-agent"})

JSON_BODY, NO_BODY, STREAM = "json", "none", "stream"

_C = "(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})"
_IMG = "(?P<name>[A-Za-z0-9][A-Za-z0-9._/:@-]{0,511})"
_VOL = "(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})"
_EXEC = "(?P<id>[0-9a-f]{64})"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    name: str
    query: tuple[str, ...] = ()
    body: str = NO_BODY


ROUTES: tuple[Route, ...] = (
    Route("GET", "/_ping", "ping"), Route("HEAD", "/_ping", "ping"),
    Route("GET", "/version", "version"), Route("GET", "/info", "info"),
    Route("GET", "/events", "events", ("since", "until", "filters")),
    Route("POST", "/auth", "auth", body=JSON_BODY),
    Route("GET", "/system/df", "system.df", ("type",)),
    Route("GET", "/containers/json", "containers.list",
          ("all", "limit", "size", "filters", "before", "since")),
    Route("POST", "/containers/create", "containers.create", ("name", "platform"), JSON_BODY),
    Route("POST", "/containers/prune", "containers.prune", ("filters",)),
    Route("GET", f"/containers/{_C}/json", "container.inspect", ("size",)),
    Route("GET", f"/containers/{_C}/top", "container.top", ("ps_args",)),
    Route("GET", f"/containers/{_C}/logs", "container.logs",
          ("follow", "stdout", "stderr", "since", "until", "timestamps", "tail", "details")),
    Route("GET", f"/containers/{_C}/changes", "container.changes"),
    Route("GET", f"/containers/{_C}/export", "container.export"),
    Route("GET", f"/containers/{_C}/stats", "container.stats", ("stream", "one-shot")),
    Route("POST", f"/containers/{_C}/resize", "container.resize", ("h", "w")),
    Route("POST", f"/containers/{_C}/start", "container.start", ("detachKeys",)),
    Route("POST", f"/containers/{_C}/stop", "container.stop", ("t", "signal")),
    Route("POST", f"/containers/{_C}/restart", "container.restart", ("t", "signal")),
    Route("POST", f"/containers/{_C}/kill", "container.kill", ("signal",)),
    Route("POST", f"/containers/{_C}/pause", "container.pause"),
    Route("POST", f"/containers/{_C}/unpause", "container.unpause"),
    Route("POST", f"/containers/{_C}/attach", "container.attach",
          ("detachKeys", "logs", "stream", "stdin", "stdout", "stderr")),
    Route("GET", f"/containers/{_C}/attach/ws", "container.attach_ws",
          ("detachKeys", "logs", "stream", "stdin", "stdout", "stderr")),
    Route("POST", f"/containers/{_C}/wait", "container.wait", ("condition",)),
    Route("DELETE", f"/containers/{_C}", "container.remove", ("v", "force", "link")),
    Route("HEAD", f"/containers/{_C}/archive", "container.archive_stat", ("path",)),
    Route("GET", f"/containers/{_C}/archive", "container.archive_get", ("path",)),
    Route("PUT", f"/containers/{_C}/archive", "container.archive_put",
          ("path", "noOverwriteDirNonDir", "copyUIDGID"), STREAM),
    Route("POST", f"/containers/{_C}/exec", "container.exec", body=JSON_BODY),
    Route("POST", f"/containers/{_C}/rename", "container.rename", ("name",)),
    Route("POST", f"/containers/{_C}/update", "container.update", body=JSON_BODY),
    Route("POST", f"/exec/{_EXEC}/start", "exec.start", body=JSON_BODY),
    Route("POST", f"/exec/{_EXEC}/resize", "exec.resize", ("h", "w")),
    Route("GET", f"/exec/{_EXEC}/json", "exec.inspect"),
    Route("GET", "/images/json", "images.list", ("all", "filters", "digests", "shared-size")),
    Route("GET", "/images/search", "images.search", ("term", "limit", "filters")),
    Route("POST", "/images/create", "images.create",
          ("fromImage", "tag", "platform", "fromSrc", "repo", "message", "changes"), STREAM),
    Route("POST", "/images/load", "images.load", ("quiet",), STREAM),
    Route("GET", "/images/get", "images.get", ("names",)),
    Route("POST", "/images/prune", "images.prune", ("filters",)),
    Route("GET", f"/images/{_IMG}/json", "image.inspect"),
    Route("GET", f"/images/{_IMG}/history", "image.history"),
    Route("GET", f"/images/{_IMG}/get", "image.get"),
    Route("POST", f"/images/{_IMG}/tag", "image.tag", ("repo", "tag")),
    Route("POST", f"/images/{_IMG}/push", "image.push", ("tag",)),
    Route("DELETE", f"/images/{_IMG}", "image.remove", ("force", "noprune")),
    Route("POST", "/build", "build",
          ("dockerfile", "t", "extrahosts", "remote", "q", "nocache", "cachefrom", "pull", "rm",
           "forcerm", "memory", "memswap", "cpushares", "cpusetcpus", "cpuperiod", "cpuquota",
           "buildargs", "shmsize", "squash", "labels", "networkmode", "platform", "target",
           "outputs", "version", "session", "buildid"), STREAM),
    Route("POST", "/build/prune", "build.prune", ("keep-storage", "all", "filters")),
    Route("POST", "/commit", "commit",
          ("container", "repo", "tag", "comment", "author", "pause", "changes"), JSON_BODY),
    Route("GET", "/volumes", "volumes.list", ("filters",)),
    Route("POST", "/volumes/create", "volumes.create", body=JSON_BODY),
    Route("POST", "/volumes/prune", "volumes.prune", ("filters",)),
    Route("GET", f"/volumes/{_VOL}", "volume.inspect"),
    Route("DELETE", f"/volumes/{_VOL}", "volume.remove", ("force",)),
    Route("GET", "/networks", "networks.list", ("filters",)),
    Route("POST", "/networks/create", "networks.create", body=JSON_BODY),
    Route("POST", "/networks/prune", "networks.prune", ("filters",)),
    Route("GET", f"/networks/{_C}", "network.inspect", ("verbose", "scope")),
    Route("DELETE", f"/networks/{_C}", "network.remove"),
    Route("POST", f"/networks/{_C}/connect", "network.connect", body=JSON_BODY),
    Route("POST", f"/networks/{_C}/disconnect", "network.disconnect", body=JSON_BODY),
    Route("POST", "/session", "session"), Route("GET", "/plugins", "plugins", ("filters",)),
    Route("GET", "/swarm", "swarm"), Route("GET", "/nodes", "swarm.nodes", ("filters",)),
    Route("GET", "/services", "swarm.services", ("filters", "status")),
    Route("GET", "/tasks", "swarm.tasks", ("filters",)),
    Route("GET", "/secrets", "swarm.secrets", ("filters",)),
    Route("GET", "/configs", "swarm.configs", ("filters",)),
    Route("GET", f"/distribution/{_IMG}/json", "distribution"),
)
_COMPILED = tuple((r, re.compile(f"^{r.pattern}\\Z")) for r in ROUTES)


@dataclass(frozen=True)
class Refuse:
    """A request not forwarded: Docker's error body ``{"message": reason}`` with ``status``."""

    reason: str
    status: int = 403


@dataclass(frozen=True)
class Head:
    """A request's line and headers, parsed (its body is read once the route is known)."""

    method: str
    route: Route
    version: str | None
    params: Mapping[str, str]
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    upgrade: bool


@dataclass(frozen=True)
class Request:
    """One request, fully parsed: what :func:`ds01d.dockersock.judge.judge` decides on."""

    method: str
    route: str
    version: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None
    """Frozen JSON (mappings are read-only, lists are tuples); ``None``: no JSON body."""
    streamed: bool = False
    """The body is a stream (a build context, an archive) forwarded as it comes."""
    headers: tuple[tuple[str, str], ...] = ()
    upgrade: bool = False
    """The client asked to take over the connection (exec and attach streams)."""

    def q(self, key: str, default: str | None = None) -> str | None:
        return next((v for k, v in self.query if k == key), default)

    @property
    def param(self) -> str:
        """The container, exec, image or volume the path names."""
        return self.params.get("id") or self.params.get("name") or ""


def freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


def _path_problem(path: str) -> str | None:
    if not path.startswith("/") or not PATH_CHARS.match(path):
        return "the path holds characters the Docker API does not use (or is encoded)"
    parts = path.split("/")[1:]
    if any(p in ("", ".", "..") for p in parts):
        return "the path has an empty, '.' or '..' part"
    return None


def _query(text: str, route: Route) -> tuple[tuple[str, str], ...] | Refuse:
    if ";" in text:
        return Refuse("the query holds ';'", 400)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                          max_num_fields=MAX_QUERY_FIELDS, errors="strict")
    except ValueError as e:
        return Refuse(f"unreadable query: {e}", 400)
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        return Refuse("a query key is given twice", 400)
    unknown = sorted(set(keys) - set(route.query))
    if unknown:
        return Refuse(f"query key {unknown[0]!r} is not taken here", 400)
    return tuple(pairs)


def _match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route, rx in _COMPILED:
        if route.method == method and (m := rx.match(path)):
            return route, {k: v for k, v in m.groupdict().items() if v is not None}
    return None


def parse_head(method: str, target: str, headers: list[tuple[str, str]]) -> Head | Refuse:
    """The request line and headers, or why they are refused."""
    path, _, query = target.partition("?")
    problem = _path_problem(path)
    if problem is not None:
        return Refuse(problem, 400)
    version = None
    if (v := VERSION.match(path)) is not None:
        major, minor, path = int(v.group(1)), int(v.group(2)), v.group(3)
        if (major, minor) < MIN_VERSION:
            return Refuse(f"API version {major}.{minor} is too old (at least "
                          f"{MIN_VERSION[0]}.{MIN_VERSION[1]})", 400)
        version = f"{major}.{minor}"
    found = _match(method, path)
    if found is None:
        return Refuse(f"{method} {path} is not part of the Docker API ds01 serves", 404)
    route, params = found
    parsed = _query(query, route)
    if isinstance(parsed, Refuse):
        return parsed
    names = [k.lower() for k, _ in headers if k.lower() in FORWARDED_HEADERS]
    if len(set(names)) != len(names):
        return Refuse("a header is given twice", 400)
    kept = tuple((k.lower(), v) for k, v in headers if k.lower() in FORWARDED_HEADERS)
    upgrade = any(k.lower() == "upgrade" and v.strip().lower() == "tcp" for k, v in headers)
    return Head(method, route, version, params, parsed, kept, upgrade)


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Duplicate(f"key {k!r} is given twice")
        out[k] = v
    return out


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """Frozen JSON, or ``ValueError`` saying why not (duplicates, constants, depth...)."""
    if len(body) > MAX_JSON:
        raise ValueError(f"the body is larger than {MAX_JSON} bytes")
    try:
        text = body.decode("utf-8")
        return freeze(json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant))
    except RecursionError:
        raise ValueError("the body is nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8") from None


def with_body(head: Head, body: bytes | None) -> Request | Refuse:
    """The whole request (``body`` None: streamed, not read)."""
    common = {"method": head.method, "route": head.route.name, "version": head.version,
              "params": MappingProxyType(dict(head.params)), "query": head.query,
              "headers": head.headers, "upgrade": head.upgrade}
    if head.route.body == STREAM:
        return Request(**common, streamed=True)  # type: ignore[arg-type]
    data = body or b""
    if head.route.body == NO_BODY:
        if data.strip() not in (b"", b"{}", b"null"):
            return Refuse(f"{head.route.name} takes no body", 400)
        return Request(**common)  # type: ignore[arg-type]
    if not data.strip():
        return Request(**common)  # type: ignore[arg-type]
    ctype = dict(head.headers).get("content-type", "application/json")
    if ctype.split(";")[0].strip().lower() != "application/json":
        return Refuse(f"the body must be JSON, not {ctype}", 400)
    try:
        parsed = parse_json(data)
    except ValueError as e:
        return Refuse(f"unreadable JSON body: {e}", 400)
    return Request(**common, body=parsed)  # type: ignore[arg-type]


def canonical_path(route: str, version: str | None, **params: str) -> str:
    """The path forwarded for ``route`` with ``params`` (names resolved by the judge)."""
    template = next(r.pattern for r in ROUTES if r.name == route)
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: params[m.group(1)], template)
    return f"/v{version}{path}" if version else path
