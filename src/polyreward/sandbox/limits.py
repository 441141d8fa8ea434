"""The limits of one sandboxed run, checked at the edge."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one run may use.

    timeout_s: wall-clock seconds for the whole sandbox.
    cpu_s: CPU seconds of each process (rounded up to whole seconds: ``RLIMIT_CPU`` granularity).
    memory_mb: address space of each process, MiB.
    max_processes: processes and threads alive at once in the sandbox, its pid 1 included.
    max_output_bytes: bytes kept of stdout and of stderr each.
    disk_mb: size of the writable ``/sandbox`` tmpfs, and the largest file the program may write.
    """

    timeout_s: float
    cpu_s: float
    memory_mb: int
    max_processes: int
    max_output_bytes: int
    disk_mb: int
    open_files: int = 64

    def __post_init__(self) -> None:
        for name in ("timeout_s", "cpu_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"sandbox: {name} must be a finite number of seconds > 0, got {value!r}")
        for name in ("memory_mb", "max_processes", "max_output_bytes", "disk_mb", "open_files"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"sandbox: {name} must be an int >= 1, got {value!r}")
        if self.max_processes < 2:
            raise ValueError(
                f"sandbox: max_processes must be >= 2 (the sandbox's pid 1 and the program), got {self.max_processes}"
            )

    @property
    def cpu_seconds(self) -> int:
        """The soft ``RLIMIT_CPU``: SIGXCPU at this many CPU seconds, SIGKILL one second later."""
        return math.ceil(self.cpu_s)

    def prlimit_args(self) -> list[str]:
        """``prlimit`` options for the program (set inside the sandbox's user namespace, so the
        process count is this sandbox's alone)."""
        return [
            f"--cpu={self.cpu_seconds}:{self.cpu_seconds + 1}",
            f"--as={self.memory_mb << 20}",
            f"--nproc={self.max_processes}",
            f"--fsize={self.disk_mb << 20}",
            f"--nofile={self.open_files}",
            "--core=0",
        ]
