"""The Docker socket's pure core: parsing (smuggling refused), the judge (every rule, each
test failing when its rule is removed), creates rebuilt from ds01's model, answers renamed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ds01d.config.values import Limits
from ds01d.core.model import Container
from ds01d.dockersock import replies
from ds01d.dockersock.api import Refuse, Request, parse_head, with_body
from ds01d.dockersock.judge import Allow, AsWant, Caller, Owned, judge

LIMITS = Limits(max_gpu_equivalents=1, max_gpu_slots_per_container=1, allow_full_gpu=True,
                max_cpus=2, memory=1 << 30, memory_swap=1 << 30, shm_size=1 << 26,
                pids_limit=100, max_containers_per_user=3, max_runtime_h=None,
                idle_timeout_h=None, gpu_hold_after_stop_h=None,
                container_hold_after_stop_h=None, max_tasks=None)
ANN = Caller(uid=1001, gid=1001, user="ann", home="/home/ann", slice="ds01-student-ann.slice",
             limits=LIMITS, group="student", mig_profiles=("1g.10gb", "3g.40gb"))
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
ANN_ID = "a" * 63 + "1"
BEN_ID = "b" * 64


def container(cid: str, name: str, user: str, *, managed: bool = False,
              state: str = "running") -> Container:
    labels = {"ds01.user": user} | ({"ds01.managed": "true", "ds01.name": name} if managed
                                    else {})
    return Container(cid, f"ds01-{user}-{name}", "img", labels, state, (), EPOCH)


OWNED = Owned(containers=(container(ANN_ID, "train", "ann"),),
              volumes=frozenset({"ds01-ann-data"}),
              images={"ds01-test:1": {}, "ann/img:1": {"ds01.user": "ann"},
                      "ben/img:1": {"ds01.user": "ben"}, "new/img:1": None},
              execs={"e" * 64: ANN_ID, "f" * 64: BEN_ID},
              paths={"/home/ann/proj": None, "/home/ann/link": "/home/ann/link is a symbolic "
                     "link"},
              wants=frozenset({"queued"}), fresh_name="c-1234", now=EPOCH)


def request(method: str, target: str, body: Any = None, **headers: str) -> Request:
    head = parse_head(method, target, [("User-Agent", "Docker-Client/28.2.2"),
                                       *headers.items()])
    assert not isinstance(head, Refuse), head
    raw = None if body is None else json.dumps(body).encode()
    r = with_body(head, raw)
    assert not isinstance(r, Refuse), r
    return r


def verdict(method: str, target: str, body: Any = None, *, caller: Caller = ANN,
            owned: Owned = OWNED) -> Allow | Refuse | AsWant:
    return judge(request(method, target, body), caller, owned)


CREATE: dict[str, Any] = {
    "Image": "ds01-test:1", "Cmd": ["sleep", "1"], "User": "", "Env": ["A=1"], "Labels": {},
    "Tty": False, "OpenStdin": False, "AttachStdout": True, "Volumes": {}, "WorkingDir": "",
    "Entrypoint": None, "OnBuild": None, "ExposedPorts": {"80/tcp": {}},
    "HostConfig": {"Binds": ["/home/ann/proj:/p"], "NetworkMode": "default",
                   "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                   "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                   "Privileged": False, "CapAdd": None, "SecurityOpt": None, "Devices": [],
                   "DeviceRequests": None, "PidMode": "", "IpcMode": "", "UTSMode": "",
                   "UsernsMode": "", "CgroupnsMode": "", "Memory": 0, "NanoCpus": 0,
                   "MaskedPaths": None, "ReadonlyPaths": None, "LogConfig": {"Type": "",
                                                                              "Config": {}}},
    "NetworkingConfig": {"EndpointsConfig": {"default": {"IPAMConfig": None, "Aliases": None}}},
}


def create(**host: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(CREATE))
    for key, value in host.items():
        if key.startswith("C_"):
            body[key[2:]] = value
        else:
            body["HostConfig"][key] = value
    return body


# --- parsing: what is refused before judging --------------------------------------------

PARSE_REFUSED = [
    ("unknown path", "GET", "/v1.41/swarm/join", "not part of the Docker API"),
    ("encoded slash", "GET", "/v1.41/containers/..%2f..%2fimages/json", "encoded"),
    ("dot dot", "GET", "/v1.41/containers/../images/json", "'..'"),
    ("double slash", "GET", "/v1.41//containers/json", "empty"),
    ("old API version", "POST", "/v1.23/containers/x/start", "too old"),
    ("query key twice", "GET", "/containers/json?all=1&all=0", "twice"),
    ("unknown query key", "GET", "/containers/json?all=1&host=1", "not taken"),
    ("semicolon in query", "GET", "/containers/json?all=1;x=2", "';'"),
]


@pytest.mark.parametrize(("what", "method", "target", "word"), PARSE_REFUSED,
                         ids=[p[0] for p in PARSE_REFUSED])
def test_parse_refuses(what: str, method: str, target: str, word: str) -> None:
    head = parse_head(method, target, [])
    assert isinstance(head, Refuse) and word in head.reason, (what, head)


def test_versionless_and_versioned_paths_are_the_same_route() -> None:
    a, b = request("GET", "/containers/json"), request("GET", "/v1.41/containers/json")
    assert (a.route, a.version, b.route, b.version) == ("containers.list", None,
                                                        "containers.list", "1.41")


BODY_REFUSED = [
    ("duplicate key", b'{"Image": "a", "HostConfig": {"Privileged": false, '
     b'"Privileged": true}}', "twice"),
    ("NaN", b'{"Image": NaN}', "not JSON"),
    ("not UTF-8", b'{"Image": "\xff"}', "UTF-8"),
    ("deep", b"[" * 100000 + b"]" * 100000, "deep"),
    ("too big", b'{"Env": ["' + b"x" * (2 << 20) + b'"]}', "larger"),
]


@pytest.mark.parametrize(("what", "body", "word"), BODY_REFUSED,
                         ids=[b[0] for b in BODY_REFUSED])
def test_bodies_refused(what: str, body: bytes, word: str) -> None:
    head = parse_head("POST", "/v1.41/containers/create", [])
    assert not isinstance(head, Refuse)
    r = with_body(head, body)
    assert isinstance(r, Refuse) and word in r.reason, (what, r)


def test_a_body_where_none_belongs_is_refused() -> None:
    head = parse_head("POST", "/v1.41/containers/x/start", [])
    assert not isinstance(head, Refuse)
    r = with_body(head, b'{"Privileged": true}')
    assert isinstance(r, Refuse) and "no body" in r.reason


# --- whose: the caller's objects only -----------------------------------------------------

def test_own_container_by_name_id_and_prefix() -> None:
    for ref in ("train", ANN_ID, ANN_ID[:4], "ds01-ann-train"):
        v = verdict("POST", f"/v1.41/containers/{ref}/stop")
        assert isinstance(v, Allow) and v.forward.path == f"/v1.41/containers/{ANN_ID}/stop"


@pytest.mark.parametrize("route", ["stop", "start", "kill", "restart", "pause", "json",
                                   "logs", "top", "export", "stats", "changes", "wait"])
def test_another_users_container_is_not_found(route: str) -> None:
    method = "GET" if route in ("json", "logs", "top", "export", "stats", "changes") else "POST"
    for ref in ("ds01-ben-train", BEN_ID, BEN_ID[:6]):
        v = verdict(method, f"/v1.41/containers/{ref}/{route}")
        assert isinstance(v, Refuse) and v.status == 404, (route, ref, v)


def test_removing_another_users_container_is_refused() -> None:
    v = verdict("DELETE", f"/v1.41/containers/{BEN_ID}?force=1")
    assert isinstance(v, Refuse) and v.status == 404


def test_ambiguous_prefix_among_ones_own() -> None:
    owned = Owned(containers=(container("ab" + "1" * 62, "x", "ann"),
                              container("ab" + "2" * 62, "y", "ann")))
    v = verdict("POST", "/v1.41/containers/ab/stop", owned=owned)
    assert isinstance(v, Refuse) and "more than one" in v.reason


def test_exec_of_another_users_container_is_not_found() -> None:
    assert isinstance(verdict("POST", f"/v1.41/exec/{'e' * 64}/start", {"Detach": False}),
                      Allow)
    v = verdict("POST", f"/v1.41/exec/{'f' * 64}/start", {"Detach": False})
    assert isinstance(v, Refuse) and v.status == 404


def test_listings_show_only_the_callers() -> None:
    v = verdict("GET", "/v1.41/containers/json?all=1&filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D")
    assert isinstance(v, Allow)
    filters = json.loads(dict(v.forward.query)["filters"])
    assert filters["label"] == {"a=b": True, "ds01.user=ann": True}
    for target in ("/v1.41/events", "/v1.41/volumes"):
        v = verdict("GET", target)
        assert isinstance(v, Allow)
        assert json.loads(dict(v.forward.query)["filters"])["label"] == {"ds01.user=ann": True}


def test_volumes_by_the_names_given() -> None:
    v = verdict("DELETE", "/v1.41/volumes/data")
    assert isinstance(v, Allow) and v.forward.path == "/v1.41/volumes/ds01-ann-data"
    assert isinstance(verdict("DELETE", "/v1.41/volumes/ds01-ben-data"), Refuse)
    v = verdict("POST", "/v1.41/volumes/create", {"Name": "new"})
    assert isinstance(v, Allow)
    assert v.forward.body == {"Name": "ds01-ann-new", "Driver": "local",
                              "Labels": {"ds01.user": "ann"}}


# --- every rule: the allowed base, and the one change that makes it refused ---------------

RULES = [
    # (rule, method, target, body, word in the reason)
    ("privileged", "POST", "/v1.41/containers/create", create(Privileged=True), "Privileged"),
    ("cap-add", "POST", "/v1.41/containers/create", create(CapAdd=["SYS_ADMIN"]), "CapAdd"),
    ("devices", "POST", "/v1.41/containers/create",
     create(Devices=[{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda"}]), "Devices"),
    ("host pid", "POST", "/v1.41/containers/create", create(PidMode="host"), "PidMode"),
    ("host ipc", "POST", "/v1.41/containers/create", create(IpcMode="host"), "IpcMode"),
    ("host uts", "POST", "/v1.41/containers/create", create(UTSMode="host"), "UTSMode"),
    ("host userns", "POST", "/v1.41/containers/create", create(UsernsMode="host"),
     "UsernsMode"),
    ("host cgroupns", "POST", "/v1.41/containers/create", create(CgroupnsMode="host"),
     "CgroupnsMode"),
    ("host network", "POST", "/v1.41/containers/create", create(NetworkMode="host"),
     "network"),
    ("container network", "POST", "/v1.41/containers/create",
     create(NetworkMode=f"container:{BEN_ID}"), "network"),
    ("seccomp unconfined", "POST", "/v1.41/containers/create",
     create(SecurityOpt=["seccomp=unconfined"]), "security-opt"),
    ("apparmor unconfined", "POST", "/v1.41/containers/create",
     create(SecurityOpt=["apparmor=unconfined"]), "security-opt"),
    ("changed kernel paths", "POST", "/v1.41/containers/create", create(ReadonlyPaths=["/x"]),
     "ReadonlyPaths"),
    ("bind of /", "POST", "/v1.41/containers/create", create(Binds=["/:/host"]), "outside"),
    ("bind of the docker socket", "POST", "/v1.41/containers/create",
     create(Binds=["/var/run/docker.sock:/var/run/docker.sock"]), "outside"),
    ("bind through a link", "POST", "/v1.41/containers/create",
     create(Binds=["/home/ann/link:/x"]), "symbolic link"),
    ("mount of /etc", "POST", "/v1.41/containers/create",
     create(Mounts=[{"Type": "bind", "Source": "/etc", "Target": "/x"}]), "outside"),
    ("volume driver options", "POST", "/v1.41/containers/create",
     create(Mounts=[{"Type": "volume", "Source": "v", "Target": "/x", "VolumeOptions": {
         "DriverConfig": {"Name": "local", "Options": {"o": "bind", "device": "/"}}}}]),
     "driver options"),
    ("volumes from", "POST", "/v1.41/containers/create", create(VolumesFrom=[BEN_ID]),
     "VolumesFrom"),
    ("shared propagation", "POST", "/v1.41/containers/create",
     create(Binds=["/home/ann/proj:/p:rshared"]), "rshared"),
    ("port on all addresses", "POST", "/v1.41/containers/create",
     create(PortBindings={"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}),
     "127.0.0.1"),
    ("publish all", "POST", "/v1.41/containers/create", create(PublishAllPorts=True),
     "PublishAllPorts"),
    ("user root", "POST", "/v1.41/containers/create", create(C_User="root"), "--user root"),
    ("user 0", "POST", "/v1.41/containers/create", create(C_User="0:0"), "--user 0:0"),
    ("ds01 label", "POST", "/v1.41/containers/create", create(C_Labels={"ds01.user": "ben"}),
     "ds01."),
    ("odd casing", "POST", "/v1.41/containers/create", create(privileged=True),
     "odd casing"),
    ("unknown key", "POST", "/v1.41/containers/create", create(Hypervisor="x"),
     "not a setting"),
    ("sysctls", "POST", "/v1.41/containers/create", create(Sysctls={"kernel.x": "1"}),
     "Sysctls"),
    ("group add", "POST", "/v1.41/containers/create", create(GroupAdd=["docker"]), "GroupAdd"),
    ("another runtime", "POST", "/v1.41/containers/create", create(Runtime="runsc"),
     "runtime"),
    ("over memory", "POST", "/v1.41/containers/create", create(Memory=2 << 30), "memory"),
    ("over cpus", "POST", "/v1.41/containers/create", create(NanoCpus=8 * 10**9), "cpus"),
    ("image with ds01 labels", "POST", "/v1.41/containers/create",
     create(C_Image="ben/img:1"), "ds01.* labels"),
    ("name taken by a want", "POST", "/v1.41/containers/create?name=queued", create(),
     "already want"),
    ("name taken", "POST", "/v1.41/containers/create?name=train", create(), "Conflict"),
    ("exec as root", "POST", "/v1.41/containers/train/exec", {"User": "root", "Cmd": ["id"]},
     "exec as 'root'"),
    ("exec privileged", "POST", "/v1.41/containers/train/exec",
     {"Privileged": True, "Cmd": ["id"]}, "privileged"),
    ("copy in as root", "PUT", "/v1.41/containers/train/archive?path=/", None, "copying"),
    ("update limits", "POST", "/v1.41/containers/train/update", {"Memory": 1}, "update"),
    ("remove links", "DELETE", "/v1.41/containers/train?link=1", None, "links"),
    ("volume driver", "POST", "/v1.41/volumes/create", {"Name": "v", "Driver": "nfs"},
     "driver"),
    ("volume bind option", "POST", "/v1.41/volumes/create",
     {"Name": "v", "DriverOpts": {"o": "bind", "device": "/"}}, "driver options"),
    ("build remote", "POST", "/v1.41/build?remote=https%3A%2F%2Fx", None, "remote"),
    ("buildkit", "POST", "/v1.41/build?version=2", None, "BuildKit"),
    ("build as someone's image", "POST", "/v1.41/build?t=ben%2Fimg%3A1", None,
     "did not build"),
    ("build host network", "POST", "/v1.41/build?networkmode=host", None, "network"),
    ("tag someone's image", "POST", "/v1.41/images/ben/img:1/tag?repo=ann%2Fimg&tag=2", None,
     "not your image"),
    ("remove someone's image", "DELETE", "/v1.41/images/ben/img:1", None, "not your image"),
    ("import", "POST", "/v1.41/images/create?fromSrc=-", None, "import"),
    ("load", "POST", "/v1.41/images/load", None, "load"),
    ("prune", "POST", "/v1.41/containers/prune", None, "prune"),
    ("networks", "POST", "/v1.41/networks/create", {"Name": "n"}, "networks"),
    ("system df", "GET", "/v1.41/system/df", None, "system df"),
]


@pytest.mark.parametrize(("rule", "method", "target", "body", "word"), RULES,
                         ids=[r[0] for r in RULES])
def test_each_rule_refuses(rule: str, method: str, target: str, body: Any, word: str) -> None:
    v = verdict(method, target, body)
    assert isinstance(v, Refuse), (rule, v)
    assert word in v.reason, (rule, v.reason)


ALLOWED = [
    ("create", "POST", "/v1.41/containers/create?name=web", create()),
    ("create as oneself", "POST", "/v1.41/containers/create", create(C_User="1001:1001")),
    ("exec", "POST", "/v1.41/containers/train/exec", {"User": "", "Cmd": ["id"]}),
    ("copy out", "GET", "/v1.41/containers/train/archive?path=/etc", None),
    ("volume", "POST", "/v1.41/volumes/create", {"Name": "v", "Driver": "local"}),
    ("build", "POST", "/v1.41/build?t=ann%2Fimg%3A1&dockerfile=Dockerfile&version=1", None),
    ("build a new name", "POST", "/v1.41/build?t=new%2Fimg%3A1", None),
    ("tag one's image", "POST", "/v1.41/images/ann/img:1/tag?repo=new%2Fimg&tag=1", None),
    ("pull", "POST", "/v1.41/images/create?fromImage=ubuntu&tag=24.04", None),
    ("ping", "HEAD", "/_ping", None),
]


@pytest.mark.parametrize(("what", "method", "target", "body"), ALLOWED,
                         ids=[a[0] for a in ALLOWED])
def test_the_bases_are_allowed(what: str, method: str, target: str, body: Any) -> None:
    """Each refused case above differs from one of these in the one thing its rule is about."""
    assert isinstance(verdict(method, target, body), Allow), what


# --- what is forwarded ------------------------------------------------------------------

def test_create_is_rebuilt_as_the_caller_in_their_slice() -> None:
    v = verdict("POST", "/v1.41/containers/create?name=web", create())
    assert isinstance(v, Allow)
    body, host = v.forward.body, v.forward.body["HostConfig"]
    assert dict(v.forward.query) == {"name": "ds01-ann-web"}
    assert body["User"] == "1001:1001" and host["CgroupParent"] == "ds01-student-ann.slice"
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["Privileged"] is False and "DeviceRequests" not in host
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    assert host["Memory"] == 1 << 30 and host["NanoCpus"] == 2 * 10**9
    assert host["Mounts"][0]["Source"] == "/home/ann/proj"
    labels = body["Labels"]
    assert labels["ds01.user"] == "ann" and labels["ds01.managed"] == "false"
    assert labels["ds01.type"] == "docker" and labels["ds01.spec"] == ""


def test_create_without_a_name_gets_one() -> None:
    v = verdict("POST", "/v1.41/containers/create", create())
    assert isinstance(v, Allow) and dict(v.forward.query) == {"name": "ds01-ann-c-1234"}


def test_exec_runs_as_the_caller() -> None:
    v = verdict("POST", "/v1.41/containers/train/exec", {"Cmd": ["id"], "Tty": True})
    assert isinstance(v, Allow) and v.forward.body == {"Cmd": ["id"], "Tty": True,
                                                       "User": "1001:1001"}


@pytest.mark.parametrize("gpus", [
    {"DeviceRequests": [{"Driver": "", "Count": -1, "DeviceIDs": None,
                         "Capabilities": [["gpu"]], "Options": {}}]},
    {"DeviceRequests": [{"Count": 0, "DeviceIDs": ["GPU-1"], "Capabilities": [["gpu"]]}]},
    {"C_Env": ["NVIDIA_VISIBLE_DEVICES=all"]},
    {"Runtime": "nvidia"},
], ids=["--gpus all", "device=", "NVIDIA_VISIBLE_DEVICES", "nvidia runtime"])
def test_a_gpu_create_becomes_a_want(gpus: dict[str, Any]) -> None:
    v = verdict("POST", "/v1.41/containers/create?name=gpu", create(**gpus))
    assert isinstance(v, AsWant), v
    w = v.want
    assert (w.user, w.name, w.gpus, w.mig, w.image) == ("ann", "gpu", 1, None, "ds01-test:1")
    assert w.settings is not None and w.settings.start == "client"
    assert w.settings.command == ("sleep", "1")
    assert all(not e.startswith("NVIDIA_") for e in w.settings.env)


def test_a_gpu_create_without_full_gpus_asks_for_the_largest_mig_that_fits() -> None:
    from dataclasses import replace

    caller = replace(ANN, limits=LIMITS.replace(allow_full_gpu=False, max_gpu_equivalents=0.5))
    v = verdict("POST", "/v1.41/containers/create?name=g", create(Runtime="nvidia"),
                caller=caller)
    assert isinstance(v, AsWant) and (v.want.gpus, v.want.mig) == (None, "3g.40gb")


def test_a_gpu_create_again_for_its_own_want_goes_to_the_want() -> None:
    owned = Owned(containers=(container(ANN_ID, "gpu", "ann", managed=True, state="created"),),
                  images={"ds01-test:1": {}}, paths={"/home/ann/proj": None}, now=EPOCH)
    v = verdict("POST", "/v1.41/containers/create?name=gpu", create(Runtime="nvidia"),
                owned=owned)
    assert isinstance(v, AsWant)


def test_removing_a_ds01_container_drops_its_want() -> None:
    owned = Owned(containers=(container(ANN_ID, "gpu", "ann", managed=True),))
    v = verdict("DELETE", f"/v1.41/containers/{ANN_ID[:8]}?force=1", owned=owned)
    assert isinstance(v, Allow) and v.drop_want == "gpu"


def test_a_stopped_ds01_container_is_started_again_through_ds01() -> None:
    from ds01d.config.want import Want

    stopped = (container(ANN_ID, "gpu", "ann", managed=True, state="exited"),)
    v = verdict("POST", "/v1.41/containers/gpu/start", owned=Owned(containers=stopped))
    assert isinstance(v, Refuse) and "ds01 want container gpu" in v.reason
    want = Want("ann", "gpu", "img", datetime(2025, 1, 1, tzinfo=UTC), gpus=1)
    v = verdict("POST", "/v1.41/containers/gpu/start",
                owned=Owned(containers=stopped, want=want, now=EPOCH))
    assert isinstance(v, AsWant) and v.again and v.want.requested_at == EPOCH
    running = (container(ANN_ID, "gpu", "ann", managed=True, state="created"),)
    assert isinstance(verdict("POST", "/v1.41/containers/gpu/start",
                              owned=Owned(containers=running, want=want, now=EPOCH)), Allow)


def test_admins_pass_through() -> None:
    from dataclasses import replace

    v = verdict("POST", "/v1.41/containers/create", create(Privileged=True),
                caller=replace(ANN, admin=True))
    assert isinstance(v, Allow) and v.note and v.forward.body["HostConfig"]["Privileged"]


def test_build_goes_to_the_callers_slice_labelled_theirs() -> None:
    v = verdict("POST", "/v1.41/build?t=ann%2Fimg%3A1&version=1")
    assert isinstance(v, Allow)
    q = dict(v.forward.query)
    assert q["cgroupparent"] == "ds01-student-ann.slice"
    assert json.loads(q["labels"]) == {"ds01.user": "ann"} and q["memory"] == str(1 << 30)


# --- answers ----------------------------------------------------------------------------

def test_answers_show_the_names_given() -> None:
    listing = json.dumps([{"Id": "x", "Names": ["/ds01-ann-train"]}]).encode()
    assert json.loads(replies.rewrite("containers", listing, "ann"))[0]["Names"] == ["/train"]
    inspect = json.dumps({"Name": "/ds01-ann-train"}).encode()
    assert json.loads(replies.rewrite("container", inspect, "ann"))["Name"] == "/train"
    vols = json.dumps({"Volumes": [{"Name": "ds01-ann-data"}], "Warnings": None}).encode()
    assert json.loads(replies.rewrite("volumes", vols, "ann"))["Volumes"][0]["Name"] == "data"
    ev = json.dumps({"Type": "container", "Actor": {"Attributes": {"name": "ds01-ann-t"}}})
    out = json.loads(replies.stream_line("events", ev.encode(), "ann"))
    assert out["Actor"]["Attributes"]["name"] == "t"
    net = json.dumps({"Name": "bridge", "Containers": {"x": {"Name": "ds01-ben-t"}}}).encode()
    assert json.loads(replies.rewrite("network", net, "ann"))["Containers"] == {}
    v = verdict("GET", "/v1.41/networks/bridge")
    assert isinstance(v, Allow) and v.forward.reply == "network"
    stats = json.dumps({"name": "/ds01-ann-t", "id": "x"}).encode()
    assert json.loads(replies.stream_line("stats", stats, "ann"))["name"] == "/t"


# --- the want file the socket writes for a GPU create ---------------------------------

def test_want_file_written_into_the_users_own_folder(tmp_path: Any) -> None:
    import os

    from ds01d.config.settings import ContainerSettings
    from ds01d.config.want import Want, from_yaml
    from ds01d.dockersock import wantfile
    from ds01d.errors import InvalidInput

    wants = tmp_path / "wants"
    wants.mkdir()
    want = Want("ann", "g", "img:1", EPOCH, gpus=1, settings=ContainerSettings(start="client"))
    uid = os.getuid()
    wantfile.write(str(wants), want, uid=uid, gid=os.getgid())
    path = wants / "ann/g.yaml"
    assert from_yaml(path.read_text(), user="ann", file="g.yaml") == want
    later = Want("ann", "g", "img:1", datetime(2027, 1, 1, tzinfo=UTC), gpus=1,
                 settings=ContainerSettings(start="client"))
    wantfile.write(str(wants), later, uid=uid, gid=os.getgid())
    assert from_yaml(path.read_text(), user="ann", file="g.yaml") == want  # place kept
    wantfile.drop(str(wants), "ann", "g", uid=uid, gid=os.getgid())
    assert not path.exists()
    (wants / "ben").symlink_to(tmp_path)
    with pytest.raises(InvalidInput, match="not a folder"):
        wantfile.write(str(wants), Want("ben", "g", "i", EPOCH, gpus=1), uid=uid, gid=0)
    (wants / "cid").mkdir()
    with pytest.raises(InvalidInput, match="not yours"):
        wantfile._write(str(wants), Want("cid", "g", "i", EPOCH, gpus=1), uid + 1)
