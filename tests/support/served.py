"""``alpha1-cds serve`` as a real process on a free loopback port (tests and benchmarks)."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .fhir_server import free_port

START_SECONDS = 30.0


class Served:
    """The service as deployed: granian workers, a fresh SQLite store, stderr kept."""

    def __init__(
        self,
        workers: int = 2,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        public_base_url: bool = False,
    ) -> None:
        """``command``: another server to run instead (benchmarks' floor apps);
        ``public_base_url``: set it to this server's own loopback URL (tokens' audience)."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        folder = Path(tempfile.mkdtemp(prefix="alpha1-serve-"))
        self.stderr_path = folder / "stderr.log"
        environment = {
            **os.environ,
            "ALPHA1_CDS_DATABASE_URL": f"sqlite:///{folder}/cards.sqlite",
            **(env or {}),
        }
        if public_base_url:
            environment["ALPHA1_CDS_PUBLIC_BASE_URL"] = self.base
        self.database_url = environment["ALPHA1_CDS_DATABASE_URL"]
        command = [
            *(command or [str(Path(sys.executable).with_name("alpha1-cds")), "serve"]),
            *("--port", str(self.port), "--workers", str(workers)),
        ]
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                command, env=environment, stdout=subprocess.DEVNULL, stderr=stderr
            )

    def wait_healthy(self) -> bool:
        """True once /healthz answers 200; False if the process died or time ran out."""
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            try:
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    return True
            except OSError:
                time.sleep(0.1)
            finally:
                connection.close()
        return False

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def workers_memory_mb(self, field: str = "VmHWM") -> list[float]:
        """A /proc status figure of each worker process (granian's workers are the server's
        children): VmHWM, the peak resident size, or VmRSS, the current one."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return [_memory_mb(int(pid), field) for pid in children.split()]

    def tree_peak_memory_mb(self) -> float:
        """The server's own peak plus its workers' (an upper bound of the tree's peak)."""
        own = _memory_mb(self.process.pid, "VmHWM")
        return round(own + sum(self.workers_memory_mb()), 1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def _memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0
