"""Run untrusted Python source in a sandbox: ``polyreward.sandbox.run(code, timeout_s=2, memory_mb=256)``.

Layers (docs/sandbox.md lists the guarantees and the hostile programs the tests run):

1. **An unprivileged uid.** When the caller is root, bwrap and everything under it run as
   ``nobody`` (65534): the kernel's process-count limit never binds uid 0.
2. **bubblewrap namespaces** (:mod:`polyreward.sandbox.bwrap`): new user, mount, pid, network,
   ipc, uts and cgroup namespaces, and no nested user namespaces. The filesystem is a read-only
   root with ``/usr`` only (the system Python), a fresh ``/proc``, a minimal read-only ``/dev``,
   the program at ``/main.py`` and a private size-capped tmpfs ``/sandbox`` (also ``/tmp``). An
   empty environment. Killed with its parent.
3. **Resource limits** set inside the sandbox (:mod:`polyreward.sandbox.limits`): CPU seconds,
   address space, processes (counted per sandbox: each has its own user namespace), file size,
   open files, no core dumps.
4. **This process** (:mod:`polyreward.sandbox.supervise`): a wall-clock deadline at which the
   sandbox's pid 1 is killed (the kernel kills the rest of the sandbox before bwrap can exit),
   capped output capture, every process reaped before :func:`run` returns.

Programs run under the system interpreter ``/usr/bin/python3`` in isolated mode without ``site``
(``-I -S``: standard library only; no ``PYTHON*`` variables, user or virtualenv packages). The
caller's interpreter is not used: its install tree and virtualenv live in the caller's home and
project directories, which must stay invisible.
"""

from __future__ import annotations

import os

from polyreward.sandbox.bwrap import INSTALL_HINT, SandboxError, bwrap_path, command
from polyreward.sandbox.limits import Limits
from polyreward.sandbox.supervise import SandboxResult, SandboxStatus, supervise

__all__ = ["INSTALL_HINT", "Limits", "SandboxError", "SandboxResult", "SandboxStatus", "run"]


def run(
    code: str,
    *,
    timeout_s: float,
    memory_mb: int,
    stdin: str | bytes | None = None,
    cpu_s: float | None = None,
    max_processes: int = 16,
    max_output_bytes: int = 1 << 20,
    disk_mb: int = 16,
) -> SandboxResult:
    """Run Python source ``code`` in a fresh sandbox and return what happened.

    timeout_s: wall-clock limit in seconds for the whole sandbox.
    memory_mb: address-space limit of each process, MiB (the interpreter itself needs ~20).
    stdin: the program's standard input (empty when None); str is encoded as UTF-8.
    cpu_s: CPU seconds of each process (default ``timeout_s``), rounded up to whole seconds.
    max_processes: processes and threads alive at once, the sandbox's pid 1 included.
    max_output_bytes: bytes kept of stdout and of stderr each; the rest is read and dropped.
    disk_mb: size of the writable working directory ``/sandbox`` (also ``/tmp``), MiB.

    The program sees ``/usr`` (read-only), its source at ``/main.py``, an empty ``/sandbox``, no
    network, only ``PATH``, ``HOME``, ``TMPDIR`` and ``LANG`` in its environment, and none of our
    processes or files. Safe to call from several threads at once.
    Raises :class:`SandboxError` when the sandbox cannot be set up, ValueError on bad limits.
    """
    if not isinstance(code, str):
        raise TypeError(f"sandbox: code must be Python source as str, got {type(code).__name__}")
    if stdin is not None and not isinstance(stdin, (str, bytes)):
        raise TypeError(f"sandbox: stdin must be str, bytes or None, got {type(stdin).__name__}")
    limits = Limits(
        timeout_s=timeout_s,
        cpu_s=timeout_s if cpu_s is None else cpu_s,
        memory_mb=memory_mb,
        max_processes=max_processes,
        max_output_bytes=max_output_bytes,
        disk_mb=disk_mb,
    )
    bwrap = bwrap_path()
    owned: list[int] = []  # descriptors to close here; supervise closes status_w once bwrap has it
    try:
        code_fd = _memfd("main.py", code.encode("utf-8"))
        owned.append(code_fd)
        stdin_fd = None if stdin is None else _memfd("stdin", stdin.encode() if isinstance(stdin, str) else stdin)
        owned += [] if stdin_fd is None else [stdin_fd]
        status_r, status_w = os.pipe()
        owned.append(status_r)
        return supervise(
            command(bwrap, limits, code_fd, status_w),
            limits,
            stdin_fd=stdin_fd,
            pass_fds=(code_fd, status_w),
            status_r=status_r,
            status_w=status_w,
        )
    finally:
        for fd in owned:
            os.close(fd)


def _memfd(name: str, data: bytes) -> int:
    """A read-only descriptor of an in-memory file holding ``data``: nothing touches the disk, and
    the program cannot write back through it."""
    fd = os.memfd_create(name)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
    finally:
        os.close(fd)
