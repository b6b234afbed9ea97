"""A small launcher for the benchmarks: tracelake roles as processes on loopback, one YAML config
each, and the CPU each used read from ``/proc``. Kept apart from ``tests/`` so that a benchmark runs
without the test suite; every process started is stopped on exit, Ctrl-C included."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads), from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Role:
    name: str
    proc: subprocess.Popen[bytes]
    http_port: int
    log_path: Path
    exit_cpu: float | None = None  # utime + stime of the whole run, once it exited (wait4)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return self.exit_cpu if self.exit_cpu is not None else cpu_seconds(self.pid)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 120) -> float:
        """SIGTERM (an ingester then writes everything it holds), wait; the CPU of the whole run,
        shutdown included, from the kernel's rusage. SIGKILL after ``timeout``."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while True:
                pid, status, usage = os.wait4(self.pid, os.WNOHANG)
                if pid:
                    self.proc.returncode = os.waitstatus_to_exitcode(status)
                    self.exit_cpu = usage.ru_utime + usage.ru_stime
                    break
                if time.monotonic() > deadline:
                    self.kill()
                    break
                time.sleep(0.02)
        return self.cpu()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Launcher:
    """Starts roles; on exit (normal, exception or Ctrl-C) SIGTERMs those still running, then
    SIGKILLs any that did not exit within ``grace`` seconds."""

    def __init__(self, root: Path, grace: float = 30) -> None:
        self.root = root
        self.grace = grace
        self.roles: list[Role] = []

    def start(self, name: str, command: str, config: dict[str, Any]) -> Role:
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        log_path = self.root / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tracelake.cli.main", "--config", str(path), command],
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        role = Role(name, proc, config["server"]["http_listen_port"], log_path)
        self.roles.append(role)
        return role

    def __enter__(self) -> Launcher:
        signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERMed benchmark cleans up as on Ctrl-C
        return self

    def __exit__(self, *exc: object) -> None:
        alive = [r for r in self.roles if r.proc.poll() is None]
        for role in alive:
            role.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for role in alive:
            try:
                role.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                role.kill()
