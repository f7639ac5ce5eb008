"""The /proc adapter on a small fake tree (tests/data/proc)."""

from __future__ import annotations

import os

from ds01d.adapters.procfs import ProcfsAdapter, container_of_cgroup
from ds01d.core.model import ProcOwner
from tests.conftest import REPO

NAMES = {0: "root", 1001: "alice", 1002: "dave"}
proc = ProcfsAdapter(REPO / "tests/data/proc", user_name=NAMES.get)


def test_cgroup_v2_systemd_driver_in_a_user_slice() -> None:
    assert proc.owner(101) == ProcOwner(101, "a" * 64, 0, "root")


def test_cgroup_v1_cgroupfs_driver() -> None:
    assert proc.owner(102).container_id == "b" * 64


def test_cgroup_v1_hybrid_systemd_driver() -> None:
    assert proc.owner(103).container_id == "c" * 64


def test_a_host_process_belongs_to_its_user() -> None:
    assert proc.owner(104) == ProcOwner(104, None, 1001, "alice")


def test_login_uid_names_who_logged_in_even_through_sudo() -> None:
    assert proc.owner(105) == ProcOwner(105, None, 0, "dave")


def test_a_gone_process_has_no_owner() -> None:
    assert proc.owner(999) == ProcOwner(999, None, None, None)


def test_not_a_container_id() -> None:
    assert container_of_cgroup("0::/system.slice/docker.service\n") is None
    assert container_of_cgroup("0::/docker/abc\n") is None


def test_the_owner_of_a_local_connection_is_found() -> None:
    """/proc/net/tcp names the uid of each socket: the metrics server asks it who connects."""
    import socket

    from ds01d.adapters.procfs import tcp_peer_uid

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            conn, _ = server.accept()
            with conn:
                assert tcp_peer_uid(client.getsockname()[1], port) == os.getuid()
                assert tcp_peer_uid(client.getsockname()[1], port + 1) is None
