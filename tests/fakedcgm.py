"""A stand-in for dcgm-exporter: a local HTTP server serving a scrape shaped like the real
one (HELP/TYPE lines, whole-GPU and per-GPU-instance samples, the labels dcgm-exporter puts
on them, other metrics around), whose readings a test changes between passes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ds01d.adapters.sim import SimHost

GR = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
SM = "DCGM_FI_PROF_SM_ACTIVE"


@dataclass
class Scrape:
    """What the fake exporter serves next."""

    host: SimHost
    active: dict[tuple[int, int], float] = field(default_factory=dict)
    """(GPU index, GPU instance id) -> fraction of time active (0-1)."""
    metrics: tuple[str, ...] = (GR, SM)
    lower_case: bool = False
    status: int = 200
    body: str | None = None
    """Serve this instead (a broken page)."""

    def text(self) -> str:
        if self.body is not None:
            return self.body
        lines = ["# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).",
                 "# TYPE DCGM_FI_DEV_FB_USED gauge"]
        lines += [f'DCGM_FI_DEV_FB_USED{{{self._labels(g)}}} 512' for g in self.host.gpus]
        for metric in self.metrics:
            lines += [f"# HELP {metric} Ratio of time the engine is active.",
                      f"# TYPE {metric} gauge"]
            for g in self.host.gpus:
                if not g["instances"]:
                    lines.append(f"{metric}{{{self._labels(g)}}} 0.900000")  # a whole GPU
                for i in g["instances"]:
                    value = self.active.get((g["index"], i["gi"]), 0.0)
                    lines.append(f"{metric}{{{self._labels(g, i)}}} {value:.6f}")
        text = "\n".join(lines) + "\n"
        return text.lower() if self.lower_case else text

    @staticmethod
    def _labels(g: dict[str, object], i: dict[str, object] | None = None) -> str:
        labels = [f'gpu="{g["index"]}"', f'UUID="{g["uuid"]}"',
                  f'pci_bus_id="00000000:{int(str(g["index"])) + 1:02x}:00.0"',
                  f'device="nvidia{g["index"]}"', f'modelName="{g["model"]}"']
        if i is not None:
            labels += [f'GPU_I_PROFILE="{i["profile"]}"', f'GPU_I_ID="{i["gi"]}"']
        labels += ['Hostname="lab-gpu-01"', 'DCGM_FI_DRIVER_VERSION="550.54.15"']
        return ",".join(labels)


@contextmanager
def exporter(scrape: Scrape) -> Iterator[str]:
    """Serve ``scrape`` on 127.0.0.1; yields the metrics URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = scrape.text().encode()
            self.send_response(scrape.status)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
