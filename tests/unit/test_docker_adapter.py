"""The Docker adapter's memory between looks: what it keeps of a container goes with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ds01d.adapters.docker import CpuMeter, DockerAdapter, NetMeter


class FakeApi:
    """Docker's API as the adapter calls it: a listing and inspections."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def containers(self, all: bool = False) -> list[dict[str, Any]]:
        return [{"Id": i, "State": "running"} for i in self.ids]

    def inspect_container(self, cid: str) -> dict[str, Any]:
        return {"Id": cid, "Name": f"/{cid}", "Created": "2026-01-05T09:00:00Z",
                "HostConfig": {"CgroupParent": "ds01-student-ann.slice"},
                "State": {"Status": "running", "Pid": 1, "StartedAt": "2026-01-05T09:00:00Z"},
                "Config": {"Image": "img", "Labels": {}, "Env": []}}


class Client:
    def __init__(self) -> None:
        self.api = FakeApi()


def _cgroup(root: Path, cid: str) -> None:
    scope = root / "ds01.slice/ds01-student.slice/ds01-student-ann.slice" / \
        f"docker-{cid}.scope"
    scope.mkdir(parents=True)
    (scope / "cpu.stat").write_text("usage_usec 1000\n")


def test_a_gone_container_leaves_nothing_behind(tmp_path: Path) -> None:
    proc = tmp_path / "proc/1/net"
    proc.mkdir(parents=True)
    (proc / "dev").write_text("h\nh\n  eth0: 10 0 0 0 0 0 0 0 20 0 0 0 0 0 0 0\n")
    client = Client()
    adapter = DockerAdapter(client, cpu=CpuMeter(tmp_path / "cg"), net=NetMeter(tmp_path / "proc"))
    client.api.ids = [f"c{n}" for n in range(50)]
    for n in range(50):
        _cgroup(tmp_path / "cg", f"c{n}")
    assert len(adapter.list_containers()) == 50
    assert len(adapter.cpu.last) == 50 and len(adapter.net.last) == 50
    client.api.ids = ["c7"]
    assert [c.id for c in adapter.list_containers()] == ["c7"]
    assert set(adapter.cpu.last) == {"c7"} and set(adapter.net.last) == {"c7"}
    assert {k[0] for k in adapter.inspected} == {"c7"}
