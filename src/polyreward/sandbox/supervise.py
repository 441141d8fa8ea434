"""Running bwrap from this process: the wall-clock deadline, output capture, killing, reaping and
classifying the exit."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import resource
import selectors
import signal
import subprocess
import time
from typing import Literal

from polyreward.sandbox.bwrap import SandboxError
from polyreward.sandbox.limits import Limits

SandboxStatus = Literal["ok", "error", "timeout", "memory", "killed"]

_MEMORY_MARKERS = re.compile(rb"\bMemoryError\b|Cannot allocate memory|out of memory", re.IGNORECASE)
_TAIL_BYTES = 4096  # the end of stderr, kept apart from the capped copy, to classify the exit
_KILL_GRACE_S = 5.0  # how long bwrap may take to exit once the sandbox's pid 1 is killed


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    """What one sandboxed run did.

    status: ``"ok"`` (exit 0), ``"error"`` (non-zero exit), ``"timeout"`` (wall-clock or CPU
        limit), ``"memory"`` (died of a failed allocation), ``"killed"`` (died of a signal).
    returncode: exit code 0..255, ``128 + N`` when signal N ended the program (the shell's
        convention); None when the sandbox was killed at the wall-clock limit.
    stdout, stderr: decoded as UTF-8 (invalid bytes replaced), at most ``max_output_bytes`` each.
    elapsed_s: wall-clock seconds from start until every process of the sandbox was gone.
    cpu_s: CPU seconds (user + system) of all the sandbox's processes.
    stdout_truncated, stderr_truncated: the program wrote more than ``max_output_bytes``.
    """

    status: SandboxStatus
    returncode: int | None
    stdout: str
    stderr: str
    elapsed_s: float
    cpu_s: float
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclasses.dataclass
class _Capture:
    """Bytes read from one pipe: the first ``cap`` bytes, the last ``_TAIL_BYTES``, and the count."""

    cap: int
    head: bytearray = dataclasses.field(default_factory=bytearray)
    tail: bytes = b""
    total: int = 0

    def add(self, data: bytes) -> None:
        if len(self.head) < self.cap:
            self.head += data[: self.cap - len(self.head)]
        self.tail = (self.tail + data)[-_TAIL_BYTES:]
        self.total += len(data)

    def text(self) -> str:
        return bytes(self.head).decode("utf-8", errors="replace")


def supervise(
    argv: list[str], limits: Limits, *, stdin_fd: int | None, pass_fds: tuple[int, ...], status_r: int, status_w: int
) -> SandboxResult:
    """Start bwrap (``argv``), read its output until it ends or the deadline passes, kill it at the
    deadline, reap it, and classify the exit. Closes ``status_w`` (bwrap holds the only copy)."""
    start = time.perf_counter()
    deadline = start + limits.timeout_s
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL if stdin_fd is None else stdin_fd,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=pass_fds,
            env={"PATH": "/usr/bin:/bin"}, start_new_session=True,
        )  # fmt: skip
    finally:
        os.close(status_w)
    out, err, status = _Capture(limits.max_output_bytes), _Capture(limits.max_output_bytes), _Capture(1 << 16)
    usage = None
    try:
        _pump({proc.stdout: out, proc.stderr: err, status_r: status}, deadline)
        usage = _reap(proc, deadline)  # the program may close its pipes and keep running
    finally:
        if usage is None:
            usage = _kill(proc, _child_pid(status.head))
        proc.stdout.close()
        proc.stderr.close()
    elapsed = time.perf_counter() - start
    finished = elapsed < limits.timeout_s
    if finished and b'"child-pid"' not in status.head:
        raise SandboxError(
            f"sandbox: bubblewrap could not start the sandbox (exit {proc.returncode}): "
            f"{err.text().strip() or '(no message)'}; it needs bubblewrap >= 0.8 and unprivileged "
            "user namespaces (sysctl kernel.unprivileged_userns_clone=1 where that exists)"
        )
    cpu = usage.ru_utime + usage.ru_stime
    return SandboxResult(
        status=_classify(finished, proc.returncode, cpu, limits, err.tail),
        returncode=proc.returncode if finished else None,
        stdout=out.text(), stderr=err.text(), elapsed_s=elapsed, cpu_s=cpu,
        stdout_truncated=out.total > limits.max_output_bytes, stderr_truncated=err.total > limits.max_output_bytes,
    )  # fmt: skip


def _pump(captures: dict, deadline: float) -> None:
    """Read every pipe into its capture until all are closed or the deadline passes. Output past
    a capture's cap is read and dropped, so the program never blocks on a full pipe."""
    with selectors.DefaultSelector() as selector:
        for pipe, capture in captures.items():
            selector.register(pipe, selectors.EVENT_READ, capture)
        while selector.get_map() and (remaining := deadline - time.perf_counter()) > 0:
            for key, _ in selector.select(remaining):
                data = os.read(key.fd, 1 << 16)
                if data:
                    key.data.add(data)
                else:
                    selector.unregister(key.fileobj)


def _reap(proc: subprocess.Popen, deadline: float) -> resource.struct_rusage | None:
    """Wait for bwrap until ``deadline``: None if it is still running, else its rusage, which
    covers every process of the sandbox (each was reaped inside before bwrap could reap pid 1)."""
    pause = 0.0002
    while True:
        pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(wait_status)  # so Popen never waits again
            return usage
        if time.perf_counter() >= deadline:
            return None
        time.sleep(pause)
        pause = min(2 * pause, 0.01)


def _child_pid(status_json: bytes) -> int | None:
    """bwrap's first status document ``{"child-pid": N, ...}``: the sandbox's pid 1, as seen here."""
    first = bytes(status_json).split(b"\n", 1)[0]
    try:
        return int(json.loads(first)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


def _kill(proc: subprocess.Popen, sandbox_init: int | None) -> resource.struct_rusage:
    """Kill the sandbox and reap bwrap.

    Killing the sandbox's pid 1 makes the kernel kill every other process in its pid namespace
    before bwrap (pid 1's parent) can reap it and exit. Killing bwrap itself is the fallback
    (``--die-with-parent`` then kills pid 1).
    """
    if sandbox_init is not None:
        _kill_child(proc.pid, sandbox_init)
        usage = _reap(proc, time.perf_counter() + _KILL_GRACE_S)
        if usage is not None:
            return usage
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    _, wait_status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(wait_status)
    return usage


def _kill_child(parent: int, pid: int) -> None:
    """SIGKILL ``pid`` if it is still ``parent``'s child. The pidfd pins the process, so a pid
    recycled after bwrap reaped pid 1 is never signalled."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            ppid = int(stat.read().rsplit(b")", 1)[1].split()[1])
        if ppid == parent:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except (FileNotFoundError, ProcessLookupError):
        pass  # already gone
    finally:
        os.close(pidfd)


def _classify(finished: bool, returncode: int, cpu_s: float, limits: Limits, stderr_tail: bytes) -> SandboxStatus:
    """The status from how the sandbox ended. SIGXCPU is the soft CPU limit; a SIGKILL after the
    CPU budget is the hard one (for programs that ignore SIGXCPU). "memory" trusts the program's
    stderr (a MemoryError traceback), so a program can fake it; the containment never depends on
    the status."""
    if not finished or returncode == 128 + signal.SIGXCPU:
        return "timeout"
    if returncode == 128 + signal.SIGKILL and cpu_s >= limits.cpu_seconds:
        return "timeout"
    if returncode != 0 and _MEMORY_MARKERS.search(stderr_tail):
        return "memory"
    if returncode > 128:
        return "killed"
    return "ok" if returncode == 0 else "error"
