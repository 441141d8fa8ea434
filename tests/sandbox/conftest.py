"""Fixtures for the sandbox tests: things outside the sandbox that hostile programs go after, and
checks that nothing was left running and nothing reached this process."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path

import pytest

from polyreward.sandbox.bwrap import NOBODY

WATCHED_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT, signal.SIGALRM)


@dataclasses.dataclass(frozen=True)
class Canary:
    """A world-readable, world-writable directory and file in the host's /tmp: only the mount
    namespace stands between them and the sandboxed program (file permissions would not)."""

    dir: Path
    file: Path
    text: str

    def intact(self) -> bool:
        info = self.file.stat()
        return (
            self.file.read_text() == self.text
            and sorted(p.name for p in self.dir.iterdir()) == ["canary.txt"]
            and stat.S_IMODE(info.st_mode) == 0o666
        )


@pytest.fixture
def canary():
    directory = Path(tempfile.mkdtemp(prefix="polyreward-canary-"))
    directory.chmod(0o777)
    file = directory / "canary.txt"
    text = f"CANARY-{secrets.token_hex(8)}"
    file.write_text(text)
    file.chmod(0o666)
    yield Canary(directory, file, text)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def secret_env(monkeypatch):
    """A secret in this process's environment; no sandboxed program may see it."""
    value = f"SECRET-{secrets.token_hex(8)}"
    monkeypatch.setenv("POLYREWARD_TEST_SECRET", value)
    return value


@pytest.fixture
def parent_signals():
    """Signals this (the parent) process receives while the test runs; restored afterwards."""
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, frame: received.append(number)) for sig in WATCHED_SIGNALS}
    yield received
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (real uid, parent pid, state) of every process on the host."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        table[int(entry)] = (int(fields["Uid"].split()[0]), int(fields["PPid"]), fields["State"].split()[0])
    return table


def sandbox_leftovers(before: set[int]) -> list[str]:
    """Processes a sandbox could have left behind: new processes running as nobody (the sandbox's
    uid when tests run as root), and any child or zombie of this process."""
    me = os.getpid()
    found = []
    for pid, (uid, ppid, state) in _processes().items():
        if pid in before:
            continue
        if (os.geteuid() == 0 and uid == NOBODY) or ppid == me or (state == "Z" and ppid == me):
            found.append(f"pid {pid} uid {uid} ppid {ppid} state {state}")
    return found


@pytest.fixture(autouse=True)
def no_leftovers():
    """Every sandbox test ends with no process of its sandboxes alive or unreaped."""
    before = set(_processes())
    started = time.time()
    yield
    leftovers = sandbox_leftovers(before)
    assert not leftovers, f"processes left after a sandbox test ({time.time() - started:.1f} s): {leftovers}"
