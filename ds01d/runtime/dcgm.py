"""Job-mapping files for a stock dcgm-exporter (``--hpc-job-mapping-dir``): one file per
allocated GPU (named ``0``) or MIG instance (named ``<gpu>.<gpu-instance-id>``), holding
``user/container``, so every DCGM metric is labelled with who holds the device."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from ds01d.core.model import Observed, devices_of
from ds01d.core.status import WantStatus
from ds01d.fsutil import holds, write_atomic
from ds01d.runtime.metrics import device_name

_OURS = re.compile(r"^[0-9]+(\.[0-9]+)?\Z")


def job_map(observed: Observed, statuses: Iterable[WantStatus]) -> dict[str, str]:
    """File name -> ``user/want`` for every device held once this pass is done."""
    by_uuid = {d.uuid: d for d in devices_of(observed.gpus)}
    return {device_name(by_uuid[uuid]): f"{s.user}/{s.name}"
            for s in statuses if s.phase == "Running" for uuid in s.devices if uuid in by_uuid}


def write_job_map(folder: Path, wanted: dict[str, str]) -> None:
    """Make ``folder`` hold exactly ``wanted`` (files are rewritten only when they change;
    only files named like devices are ever removed). The folder is root's, 0700: it says who
    holds which device, which users must not learn of each other (docs/security.md); run
    dcgm-exporter as root, or give its group read access (``chgrp``, then 0750 is kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    st = folder.stat()
    mode = 0o700 if st.st_gid == 0 else 0o750  # an admin's chgrp for dcgm-exporter is kept
    if st.st_mode & 0o777 != mode:
        folder.chmod(mode)
    for name in os.listdir(folder):
        if _OURS.match(name) and name not in wanted:
            (folder / name).unlink(missing_ok=True)
    for name, text in wanted.items():
        path = folder / name
        if not holds(path, text + "\n"):
            write_atomic(path, text + "\n", mode=0o640, durable=False)
