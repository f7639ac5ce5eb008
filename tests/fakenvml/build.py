"""Build and load the fake libnvidia-ml.so.1 (``make fakenvml`` does the same)."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = REPO / "build" / "fakenvml" / "libnvidia-ml.so.1"
MODELS = REPO / "ds01d" / "adapters" / "gpu_models.json"
"""The GPU models' MIG profiles and placements; the fake reads them from beside itself."""


def build() -> Path:
    """Compile the fake when its source is newer than the library (0.2 s with gcc), and put
    the GPU models beside it."""
    src = HERE / "fakenvml.c"
    if not OUT.exists() or OUT.stat().st_mtime < src.stat().st_mtime:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                        "-Wl,-soname,libnvidia-ml.so.1", "-o", str(OUT), str(src), "-lcjson",
                        "-ldl"], check=True)
    models = OUT.parent / "gpu-models.json"
    if not models.exists() or models.read_bytes() != MODELS.read_bytes():
        shutil.copyfile(MODELS, models)
    return OUT


def load() -> None:
    """Make pynvml's ``CDLL("libnvidia-ml.so.1")`` find the fake in this process.

    ``make unit`` puts build/fakenvml on LD_LIBRARY_PATH; when a test run was started
    without it, the fake is loaded here by path first, and the dynamic linker then resolves
    the soname to it (LD_LIBRARY_PATH is read only at process start).
    """
    path = build()
    ctypes.CDLL(str(path), mode=os.RTLD_GLOBAL if hasattr(os, "RTLD_GLOBAL") else 0)
