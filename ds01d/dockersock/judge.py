"""``judge(request, caller, owned)``: what the Docker socket does with one request (pure).

Deny by default. A caller acts only on their own containers, execs, volumes and images
(``owned``: what the server looked up for this request), by the names they gave, by id or by
an id prefix; listings and events show only theirs. Every create is rebuilt from what ds01
models (``create.py``, ``config/settings.py``, ``core/engine.py``): in the caller's slice,
as the caller's uid:gid, with no privilege. A create asking for GPUs becomes a want
(:class:`AsWant`): ds01d alone allocates devices. Members of an admin group pass through.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ds01d.config.settings import ContainerSettings, bind_sources, problems
from ds01d.config.values import Limits
from ds01d.config.want import Want
from ds01d.core import model as m
from ds01d.core.actions import ContainerSpec
from ds01d.core.engine import create_body
from ds01d.core.naming import docker_name, docker_volume, shown_name
from ds01d.dockersock.api import Refuse, Request, canonical_path, thaw
from ds01d.dockersock.create import CreateAsk, Refused, read_create
from ds01d.names import is_want_name


@dataclass(frozen=True)
class Caller:
    """Who is calling (``SO_PEERCRED``) and what applies to them."""

    uid: int
    gid: int
    user: str
    home: str
    slice: str
    limits: Limits
    group: str | None = None
    admin: bool = False
    mig_profiles: tuple[str, ...] = ()
    """MIG profiles of the lab's layout (``--gpus all`` for a user without full GPUs)."""


@dataclass(frozen=True)
class Owned:
    """What the server looked up for one request: the caller's objects, and facts."""

    containers: tuple[m.Container, ...] = ()
    """The caller's containers (label ``ds01.user``)."""
    volumes: frozenset[str] = frozenset()
    """Docker names of the caller's volumes."""
    images: Mapping[str, Mapping[str, str] | None] = field(default_factory=dict)
    """Image reference -> its labels (``None``: no such image)."""
    execs: Mapping[str, str] = field(default_factory=dict)
    """Exec id -> its container's id."""
    paths: Mapping[str, str | None] = field(default_factory=dict)
    """Bind source -> why it is not the caller's (``None``: it is)."""
    wants: frozenset[str] = frozenset()
    """Names of the caller's wants."""
    want: Want | None = None
    """The want of the container a start names, when ds01d made it from one."""
    fresh_name: str = "c0"
    """A name for a container created without one."""
    now: datetime | None = None


@dataclass(frozen=True)
class Forward:
    """What is sent to Docker, built from the judged request alone."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None
    """JSON to send (plain values); ``None``: none (or the client's stream, see below)."""
    stream_body: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    upgrade: bool = False
    reply: str = "pass"
    """How Docker's answer is shown: ``pass``, or rewritten to the names the caller gave
    (``containers``, ``container``, ``events``, ``volumes``, ``volume``)."""


@dataclass(frozen=True)
class Allow:
    forward: Forward
    note: str = ""
    """Said in the journal (an admin's request passed through)."""
    drop_want: str | None = None
    """The caller's want to drop first (removing a container ds01d made from it)."""


@dataclass(frozen=True)
class AsWant:
    """A create asking for GPUs: written as the caller's want; ds01d creates it. Or a start
    of a container ds01d stopped (``again``): its want asked for again; ds01d starts it."""

    want: Want
    again: bool = False


Verdict = Allow | Refuse | AsWant


def _fwd(r: Request, *, query: tuple[tuple[str, str], ...] | None = None, body: Any = None,
         reply: str = "pass", **params: str) -> Forward:
    return Forward(r.method, canonical_path(r.route, r.version, **(params or dict(r.params))),
                   r.query if query is None else query,
                   thaw(r.body) if body is None else body, r.streamed, r.headers, r.upgrade,
                   reply)


def not_found(what: str, ref: str) -> Refuse:
    return Refuse(f"No such {what}: {ref}", 404)


def resolve(ref: str, owned: Owned, user: str) -> m.Container | Refuse:
    """The caller's container named by ``ref``: the name they gave, its Docker name, its id
    or a unique id prefix (looked for among theirs only)."""
    for match in (lambda c: shown_name(c.name, user) == ref, lambda c: c.id == ref,
                  lambda c: c.name == ref):
        found = [c for c in owned.containers if match(c)]
        if found:
            return found[0]
    hits = [c for c in owned.containers if c.id.startswith(ref.lower())]
    if len(hits) > 1:
        return Refuse(f"{ref} names more than one of your containers: give more of the id",
                      400)
    return hits[0] if hits else not_found("container", ref)


def _container_route(r: Request, caller: Caller, owned: Owned) -> Verdict:
    c = resolve(r.param, owned, caller.user)
    if isinstance(c, Refuse):
        return c
    rule = CONTAINER_RULES.get(r.route)
    if rule is not None:
        found = rule(r, c, caller, owned)
        if found is not None:
            return found
    reply = {"container.inspect": "container", "container.stats": "stats"}.get(r.route, "pass")
    return Allow(_fwd(r, reply=reply, id=c.id))


def _remove(r: Request, c: m.Container, caller: Caller, owned: Owned) -> Verdict | None:
    if r.q("link") not in (None, "", "0", "false"):
        return Refuse("removing links is refused")
    drop = c.want_name if c.managed else None
    return Allow(_fwd(r, id=c.id), drop_want=drop)


def _start(r: Request, c: m.Container, caller: Caller, owned: Owned) -> Verdict | None:
    """A container ds01d stopped gets a device again only through ds01d: its want is asked
    for again (Docker would start it with devices that may be someone else's by now)."""
    if c.managed and c.state not in ("created", "running", "paused"):
        name = c.want_name or shown_name(c.name, caller.user)
        if owned.want is None or owned.want.name != name or owned.now is None:
            return Refuse(f"{name} was made by ds01 from a want you no longer have: ask "
                          f"again with ds01 want container {name} ...", 409)
        return AsWant(owned.want.replace(requested_at=owned.now), again=True)
    return None


def _archive_put(r: Request, c: m.Container, caller: Caller, owned: Owned) -> Verdict | None:
    return Refuse("copying into a container is refused (Docker would write the files as "
                  "root): put them in a folder you mounted, e.g. your workspace")


def _exec(r: Request, c: m.Container, caller: Caller, owned: Owned) -> Verdict | None:
    body = r.body or {}
    keys = ("User", "Privileged", "Tty", "AttachStdin", "AttachStderr", "AttachStdout",
            "Detach", "DetachKeys", "Env", "WorkingDir", "Cmd", "ConsoleSize")
    for key in body:
        if key not in keys:
            return Refuse(f"exec: {key} is not a setting ds01 knows", 400)
    if body.get("Privileged"):
        return Refuse("privileged exec is refused")
    who = str(body.get("User") or "")
    if who not in ("", str(caller.uid), f"{caller.uid}:{caller.gid}", caller.user):
        return Refuse(f"exec as {who!r} is refused: everything in your containers runs as "
                      f"you ({caller.user}, uid {caller.uid})")
    env = tuple(body.get("Env") or ())
    gpu = [e for e in env if not isinstance(e, str)
           or e.split("=", 1)[0].upper().startswith("NVIDIA_")]
    if gpu:
        return Refuse("exec: NVIDIA_* variables are set by ds01 alone")
    out = {k: thaw(body[k]) for k in keys if k in body and k != "User"}
    return Allow(_fwd(r, body=out | {"User": f"{caller.uid}:{caller.gid}"}, id=c.id))


def _refused(why: str) -> Callable[[Request, m.Container, Caller, Owned], Verdict | None]:
    return lambda r, c, caller, owned: Refuse(why)


CONTAINER_RULES: dict[str, Callable[[Request, m.Container, Caller, Owned], Verdict | None]] = {
    "container.remove": _remove,
    "container.start": _start,
    "container.restart": _start,
    "container.archive_put": _archive_put,
    "container.exec": _exec,
    "container.update": _refused("docker update is refused: your limits come from ds01 "
                                 "(ds01 limits)"),
    "container.rename": _refused("renaming is refused: a container keeps the name you gave"),
    "container.attach_ws": _refused("websocket attach is refused: use docker attach"),
}


def _exec_route(r: Request, caller: Caller, owned: Owned) -> Verdict:
    cid = owned.execs.get(r.param)
    if cid is None or all(c.id != cid for c in owned.containers):
        return not_found("exec instance", r.param)
    if r.route == "exec.start":
        body = r.body or {}
        if set(body) - {"Detach", "Tty", "ConsoleSize"}:
            return Refuse("exec start: only Detach, Tty and ConsoleSize", 400)
        return Allow(_fwd(r, body=thaw(body) if r.body is not None else None))
    return Allow(_fwd(r))


def _label_filter(r: Request, label: str) -> tuple[tuple[str, str], ...] | Refuse:
    """The query with ``filters`` narrowed to ``label`` (Docker ANDs label filters)."""
    raw = r.q("filters") or "{}"
    try:
        filters = json.loads(raw)
    except ValueError:
        return Refuse("filters: not JSON", 400)
    if not isinstance(filters, dict):
        return Refuse("filters: a JSON object", 400)
    labels = filters.get("label", {})
    if isinstance(labels, list):
        labels = {x: True for x in labels if isinstance(x, str)}
    if not isinstance(labels, dict):
        return Refuse("filters: label must be a list or an object", 400)
    filters["label"] = {**labels, label: True}
    kept = tuple((k, v) for k, v in r.query if k != "filters")
    return (*kept, ("filters", json.dumps(filters, sort_keys=True)))


def _listing(r: Request, caller: Caller, reply: str) -> Verdict:
    query = _label_filter(r, f"{m.LABEL_USER}={caller.user}")
    if isinstance(query, Refuse):
        return query
    return Allow(_fwd(r, query=query, reply=reply))


def _volume_name(ref: str, caller: Caller, owned: Owned) -> str | Refuse:
    for name in (docker_volume(caller.user, ref), ref):
        if name in owned.volumes:
            return name
    return not_found("volume", ref)


def _volume_create(r: Request, caller: Caller, owned: Owned) -> Verdict:
    body = r.body or {}
    for key in body:
        if key not in ("Name", "Driver", "DriverOpts", "Labels", "ClusterVolumeSpec"):
            return Refuse(f"volume: {key} is not a setting ds01 knows", 400)
    if body.get("Driver") not in (None, "", "local"):
        return Refuse(f"volume driver {body.get('Driver')!r} is refused: local volumes only")
    if body.get("DriverOpts") or body.get("ClusterVolumeSpec"):
        return Refuse("volume driver options are refused (the local driver's o=bind,device= "
                      "mounts any host folder)")
    name = str(body.get("Name") or "")
    if not is_want_name(name):  # as ds01 want names
        return Refuse("name your volume (lower-case letters, digits, . _ -): docker volume "
                      "create NAME", 400)
    labels = dict(body.get("Labels") or {})
    if any(str(k).lower().startswith("ds01.") for k in labels):
        return Refuse("labels starting with ds01. are set by ds01 alone")
    out = {"Name": docker_volume(caller.user, name), "Driver": "local",
           "Labels": labels | {m.LABEL_USER: caller.user}}
    return Allow(_fwd(r, body=out, reply="volume"))


def _volume_route(r: Request, caller: Caller, owned: Owned) -> Verdict:
    name = _volume_name(r.param, caller, owned)
    if isinstance(name, Refuse):
        return name
    return Allow(_fwd(r, name=name, reply="volume" if r.method == "GET" else "pass"))


def _image_owner(labels: Mapping[str, str] | None) -> str | None:
    return None if labels is None else labels.get(m.LABEL_USER)


def _image_target(ref: str, caller: Caller, owned: Owned) -> Refuse | None:
    """A name an image of the caller's may take: a new one, or one already theirs."""
    if ref not in owned.images:
        return Refuse(f"image {ref} was not looked up", 500)
    labels = owned.images[ref]
    if labels is not None and _image_owner(labels) != caller.user:
        return Refuse(f"{ref} is an image you did not build: name yours differently "
                      f"(e.g. {caller.user}/NAME)")
    return None


def _image_route(r: Request, caller: Caller, owned: Owned) -> Verdict:
    ref = r.param
    if r.route in ("image.remove", "image.push") and ref in owned.images:
        if owned.images[ref] is None:
            return not_found("image", ref)
        if _image_owner(owned.images[ref]) != caller.user:
            return Refuse(f"{ref} is not your image (only images you built can be "
                          "removed or pushed)")
    if r.route == "image.tag":
        target = f"{r.q('repo')}:{r.q('tag') or 'latest'}"
        if _image_owner(owned.images.get(ref)) != caller.user:
            return Refuse(f"{ref} is not your image: only images you built can be tagged")
        problem = _image_target(target, caller, owned)
        if problem is not None:
            return problem
    return Allow(_fwd(r))


def _build(r: Request, caller: Caller, owned: Owned) -> Verdict:
    if r.q("version") not in (None, "", "1"):
        return Refuse("BuildKit builds are refused: DOCKER_BUILDKIT=0 docker build ...")
    for key, why in (("remote", "a remote context is fetched by Docker as root"),
                     ("outputs", "build outputs"), ("session", "build sessions")):
        if r.q(key):
            return Refuse(f"build {key} is refused: {why}")
    if r.q("networkmode") not in (None, "", "default", "bridge", "none"):
        return Refuse("build network: Docker's default or none only")
    for tag in filter(None, (r.q("t") or "").split(",")):
        problem = _image_target(tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest",
                                caller, owned)
        if problem is not None:
            return problem
    labels = json.loads(r.q("labels") or "{}") if _json_ok(r.q("labels")) else None
    if not isinstance(labels, dict):
        return Refuse("build labels: a JSON object", 400)
    if any(str(k).lower().startswith("ds01.") for k in labels):
        return Refuse("labels starting with ds01. are set by ds01 alone")
    memory = int(r.q("memory") or 0) if (r.q("memory") or "0").isdigit() else -1
    limit = caller.limits.memory
    if memory < 0 or (limit is not None and memory > limit):
        return Refuse("build memory: over your memory limit (ds01 limits)")
    fixed = {"cgroupparent": caller.slice,
             "labels": json.dumps(labels | {m.LABEL_USER: caller.user}, sort_keys=True)}
    if limit is not None and not memory:
        fixed["memory"] = str(limit)
    query = tuple((k, v) for k, v in r.query if k not in fixed) + tuple(fixed.items())
    return Allow(_fwd(r, query=query))


def _json_ok(text: str | None) -> bool:
    try:
        json.loads(text or "{}")
    except ValueError:
        return False
    return True


def _commit(r: Request, caller: Caller, owned: Owned) -> Verdict:
    c = resolve(r.q("container") or "", owned, caller.user)
    if isinstance(c, Refuse):
        return c
    if r.q("repo"):
        problem = _image_target(f"{r.q('repo')}:{r.q('tag') or 'latest'}", caller, owned)
        if problem is not None:
            return problem
    if r.q("changes"):
        return Refuse("commit --change is refused", 400)
    body = dict(thaw(r.body) or {})
    if set(body) - {"Labels"} and any(body[k] for k in body if k != "Labels"):
        return Refuse("commit: only labels may be set", 400)
    labels = dict(body.get("Labels") or {})
    if any(str(k).lower().startswith("ds01.") for k in labels):
        return Refuse("labels starting with ds01. are set by ds01 alone")
    query = (*((k, v) for k, v in r.query if k != "container"), ("container", c.id))
    return Allow(_fwd(r, query=query, body={"Labels": labels | {m.LABEL_USER: caller.user}}))


def _pull(r: Request, caller: Caller, owned: Owned) -> Verdict:
    if r.q("fromSrc"):
        return Refuse("docker import is refused: build your images from a Dockerfile")
    if not r.q("fromImage"):
        return Refuse("pull: fromImage is needed", 400)
    return Allow(_fwd(r))


def _over(what: str, asked: str, limit: str, key: str) -> Refuse:
    return Refuse(f"{what} {asked} is over your limit of {limit} ({key}; see ds01 limits)")


def _resources(ask: CreateAsk, lim: Limits) -> tuple[dict[str, int | None], Refuse | None]:
    cpus = ask.cpus if ask.cpus is not None else lim.max_cpus
    if ask.cpus is not None and lim.max_cpus is not None and ask.cpus > lim.max_cpus:
        return {}, _over("--cpus", f"{ask.cpus:g}", f"{lim.max_cpus:g}", "max_cpus")
    for what, asked, limit, key in (("--memory", ask.memory, lim.memory, "memory"),
                                    ("--shm-size", ask.shm, lim.shm_size, "shm_size"),
                                    ("--pids-limit", ask.pids, lim.pids_limit, "pids_limit")):
        if asked is not None and limit is not None and asked > limit:
            return {}, _over(what, str(asked), str(limit), key)
    memory = ask.memory if ask.memory is not None else lim.memory
    swap = lim.memory_swap
    if ask.memory_swap is not None and (swap is None or ask.memory_swap <= swap):
        swap = ask.memory_swap
    if swap is not None and memory is not None:
        swap = max(swap, memory)
    return {"nano_cpus": None if cpus is None else int(cpus * 1e9), "memory": memory,
            "memory_swap": swap, "shm_size": ask.shm if ask.shm is not None else lim.shm_size,
            "pids_limit": ask.pids if ask.pids is not None else lim.pids_limit}, None


def _common_checks(ask: CreateAsk, name: str, caller: Caller, owned: Owned) -> Refuse | None:
    if ask.user not in ("", str(caller.uid), f"{caller.uid}:{caller.gid}", caller.user):
        return Refuse(f"--user {ask.user} is refused: containers run as you ({caller.user}, "
                      f"uid {caller.uid}); root in a container is root over what it mounts")
    found = problems(ask.settings, home=caller.home)
    for source in () if found else bind_sources(ask.settings):
        problem = owned.paths.get(source, "was not looked at")
        if problem is not None:
            found.append(f"bind mount {source}: {problem}")
    if found:
        return Refuse("; ".join(found))
    labels = owned.images.get(ask.image)
    if ask.image in owned.images and labels is None:
        return Refuse(f"No such image: {ask.image}", 404)
    if labels and any(k.lower().startswith("ds01.") for k in labels):
        return Refuse(f"{ask.image} carries ds01.* labels: ds01 refuses to run it")
    cap = caller.limits.max_containers_per_user
    if cap is not None and len(owned.containers) >= cap:
        return Refuse(f"you have {len(owned.containers)} containers, your limit "
                      f"(max_containers_per_user is {cap}): remove one first", 409)
    for c in owned.containers:
        if shown_name(c.name, caller.user) != name:
            continue
        if ask.gpu is not None and c.managed and c.want_name == name:
            return None  # asked again: the server answers with it, or the queue
        return Refuse(f"Conflict. The container name \"/{name}\" is already in use by "
                      "one of your containers", 409)
    if name in owned.wants and ask.gpu is None:
        return Refuse(f"you already want a container named {name} (ds01 status {name})", 409)
    return None


def _name(r: Request, owned: Owned) -> str | Refuse:
    name = r.q("name") or owned.fresh_name
    name = name.removeprefix("/")
    if not is_want_name(name):  # as ds01 want names
        return Refuse(f"container name {name!r}: lower-case letters, digits, . _ - (at most "
                      "63)", 400)
    return name


def _gpu_want(ask: CreateAsk, name: str, caller: Caller, owned: Owned) -> Verdict:
    from ds01d.units import mig_gpu_equivalents

    count = 1 if ask.gpu is None or ask.gpu.count in (-1, 0) else ask.gpu.count
    lim = caller.limits
    gpus: int | None = count
    mig = None
    if not lim.allow_full_gpu:
        quota = lim.max_gpu_equivalents
        fit = sorted((p for p in caller.mig_profiles
                      if quota is None or mig_gpu_equivalents(p) <= quota + 1e-9),
                     key=mig_gpu_equivalents)
        if count != 1 or not fit:
            return Refuse("your group may not use full GPUs: ask for one MIG instance with "
                          "ds01 want container NAME --mig PROFILE (see ds01 limits)")
        gpus, mig = None, fit[-1]
    assert owned.now is not None
    settings = ask.settings
    return AsWant(Want(user=caller.user, name=name, image=ask.image, requested_at=owned.now,
                       gpus=gpus, mig=mig, cpus=ask.cpus, memory=ask.memory, shm=ask.shm,
                       settings=settings))


def _create(r: Request, caller: Caller, owned: Owned) -> Verdict:
    try:
        ask = read_create(r.body, agent=dict(r.headers).get("user-agent", ""))
    except Refused as e:
        return Refuse(str(e))
    name = _name(r, owned)
    if isinstance(name, Refuse):
        return name
    problem = _common_checks(ask, name, caller, owned)
    if problem is not None:
        return problem
    if ask.gpu is not None:
        return _gpu_want(ask, name, caller, owned)
    res, over = _resources(ask, caller.limits)
    if over is not None:
        return over
    spec = ContainerSpec(
        docker_name=docker_name(caller.user, name), user=caller.user, want_name=name,
        image=ask.image, labels=socket_labels(caller, ask.settings), devices=(),
        cgroup_parent=caller.slice, uid=caller.uid, gid=caller.gid, workspace="",
        home=caller.home, settings=ask.settings, **res)  # type: ignore[arg-type]
    query = (("name", spec.docker_name),)
    return Allow(_fwd(r, query=query, body=create_body(spec)))


def socket_labels(caller: Caller, s: ContainerSettings) -> dict[str, str]:
    """Every ds01 label set on a container made through the socket (an image's own ds01.*
    labels are never inherited: each key is given here)."""
    labels = dict.fromkeys(m.RESERVED_LABELS, "")
    return labels | {m.LABEL_MANAGED: "false", m.LABEL_USER: caller.user,
                     m.LABEL_GROUP: caller.group or "", m.LABEL_TYPE: s.kind}


def _refuse(why: str) -> Callable[[Request, Caller, Owned], Verdict]:
    return lambda r, caller, owned: Refuse(why)


def _pass(reply: str = "pass") -> Callable[[Request, Caller, Owned], Verdict]:
    return lambda r, caller, owned: Allow(_fwd(r, reply=reply))


RULES: dict[str, Callable[[Request, Caller, Owned], Verdict]] = {
    "ping": _pass(), "version": _pass(), "info": _pass(), "auth": _pass(),
    "events": lambda r, caller, owned: _listing(r, caller, "events"),
    "containers.list": lambda r, caller, owned: _listing(r, caller, "containers"),
    "volumes.list": lambda r, caller, owned: _listing(r, caller, "volumes"),
    "containers.create": _create,
    "volumes.create": _volume_create,
    "volume.inspect": _volume_route, "volume.remove": _volume_route,
    "images.list": _pass(), "images.search": _pass(), "image.inspect": _pass(),
    "image.history": _pass(), "image.get": _pass(), "images.get": _pass(),
    "distribution": _pass(),
    "image.tag": _image_route, "image.push": _image_route, "image.remove": _image_route,
    "images.create": _pull, "build": _build, "commit": _commit,
    "networks.list": _pass(), "network.inspect": _pass("network"),
    "images.load": _refuse("docker load is refused: images are built from a Dockerfile or "
                           "pulled"),
    "system.df": _refuse("docker system df is refused: it lists everyone's containers"),
    "containers.prune": _refuse("prune is refused: remove your containers by name"),
    "images.prune": _refuse("prune is refused: remove your images by name"),
    "volumes.prune": _refuse("prune is refused: remove your volumes by name"),
    "build.prune": _refuse("prune is refused"),
    "networks.prune": _refuse("prune is refused"),
    "networks.create": _refuse("networks are refused: containers use Docker's default "
                               "network (or none)"),
    "network.remove": _refuse("networks are refused"),
    "network.connect": _refuse("networks are refused"),
    "network.disconnect": _refuse("networks are refused"),
    "session": _refuse("BuildKit sessions are refused: DOCKER_BUILDKIT=0 docker build ..."),
    "plugins": _refuse("plugins are refused"),
}


def judge(r: Request, caller: Caller, owned: Owned) -> Verdict:
    """Allow (what to forward), refuse (why), or a want for ds01d (a create with GPUs)."""
    if caller.admin:
        return Allow(_fwd(r), note=f"admin {caller.user}: {r.method} {r.route} passed through")
    if r.route.startswith("container.") and r.route != "containers.create":
        return _container_route(r, caller, owned)
    if r.route.startswith("exec."):
        return _exec_route(r, caller, owned)
    rule = RULES.get(r.route)
    if rule is None:
        return Refuse(f"{r.route.replace('.', ' ')} is not available through ds01's socket")
    return rule(r, caller, owned)
