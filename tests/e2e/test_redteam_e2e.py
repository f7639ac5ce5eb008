"""ds01 attacked end to end (real systemd, real dockerd): findings that need the real Docker
adapter. Each test fails while its hole is open."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import ALICE, Lab, wait_for


def _started(lab: Lab, user: str, name: str) -> str:
    """Docker's ``State.StartedAt``, to the second, as ds01 writes times."""
    return str(lab.inspect(user, name)["State"]["StartedAt"])[:19].replace("T", " ")


@pytest.mark.parametrize("lab", ["0.002"], indirect=True)  # idle_timeout_h: 7.2 s
def test_a_container_asked_for_again_is_seen_as_it_is_now(lab: Lab) -> None:
    """The Docker adapter caches ``inspect`` by (container id, state) and keeps an entry while
    the container exists: once a container was seen running, every later "running" reads the
    first StartedAt, and every later "exited" the first FinishedAt. After an idle stop and
    ``ds01 want`` again, ds01d shows the first start as "since" (and counts the runtime limit
    from it); at the next idle stop it compares the request with the *first* stop, takes it
    for "asked again" and starts the container again by itself, stop after stop."""
    lab.want(ALICE, "nap")
    wait_for("running", lambda: lab.running(ALICE, "nap"))
    wait_for("the idle stop", lambda: lab.status(ALICE, "nap").get("phase") == "Stopped",
             timeout=40)
    time.sleep(1.5)  # the next request is in a later second than the stop
    lab.want(ALICE, "nap")  # asked again
    wait_for("running again", lambda: lab.running(ALICE, "nap"))
    time.sleep(2)
    since = str(lab.status(ALICE, "nap").get("since", ""))[:19].replace("T", " ")
    started = _started(lab, ALICE, "nap")
    wait_for("the second idle stop",
             lambda: lab.inspect(ALICE, "nap")["State"]["Status"] == "exited", timeout=40)
    states = []
    for _ in range(10):  # nobody asked again: it stays stopped
        time.sleep(1)
        states.append(lab.inspect(ALICE, "nap")["State"]["Status"])
    starts = len(lab.events("container.start"))
    assert (since, set(states), starts) == (started, {"exited"}, 1)
