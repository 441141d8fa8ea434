"""The bubblewrap command line of one sandboxed run: what the program sees, and how it starts."""

from __future__ import annotations

import os
import shutil

from polyreward.sandbox.limits import Limits

PYTHON = "/usr/bin/python3"
PRLIMIT = "/usr/bin/prlimit"
SETPRIV = "/usr/bin/setpriv"
# The sandbox's pid 1: coreutils' timeout with no time limit runs the program as its child and
# exits with its status (128 + N for signal N) without printing anything. When pid 1 exits, the
# kernel kills the rest of the pid namespace before bwrap, its parent, can reap it, so every
# process is dead and reaped once bwrap exits. (bwrap's own init reports its exit through an
# eventfd and is left to the host's init to reap; a shell prints "Killed" on the program's stderr.)
INIT = ("/usr/bin/timeout", "0")
PROGRAM = (PYTHON, "-I", "-S", "/main.py")
NOBODY = 65534
ENVIRONMENT = {"PATH": "/usr/bin:/bin", "HOME": "/sandbox", "TMPDIR": "/sandbox", "LANG": "C.UTF-8"}
INSTALL_HINT = "install it with `apt-get install -y bubblewrap` (Debian/Ubuntu; scripts/env.sh does this when run as root)"


class SandboxError(RuntimeError):
    """The sandbox itself could not run (bubblewrap or the system Python missing, namespaces
    refused). Raised instead of a result: it says nothing about the program."""


def bwrap_path() -> str:
    """Path of ``bwrap``, after checking the tools the sandbox runs inside are there."""
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxError(f"sandbox: bubblewrap (bwrap) is not installed; {INSTALL_HINT}")
    for tool in (PYTHON, PRLIMIT, SETPRIV, INIT[0]):
        if not os.access(tool, os.X_OK):
            raise SandboxError(
                f"sandbox: {tool} is missing; programs run under the system Python, with util-linux's "
                "prlimit and setpriv and coreutils' timeout (apt-get install -y python3-minimal)"
            )
    return path


def command(bwrap: str, limits: Limits, code_fd: int, status_fd: int) -> list[str]:
    """The full argv: dropping root, bwrap's options, then pid 1, the limits, and the program.

    code_fd: a readable descriptor of the program's source (copied to ``/main.py``, read-only).
    status_fd: where bwrap writes ``{"child-pid": N, ...}`` (the sandbox's pid 1) once it started.
    """
    return [*_drop_root(), bwrap, *_namespaces(status_fd), *_filesystem(limits, code_fd), *_environment(), "--",
            *INIT, PRLIMIT, *limits.prlimit_args(), "--", *PROGRAM]  # fmt: skip


def _drop_root() -> list[str]:
    """For a root caller, run bwrap as ``nobody`` with no groups and no way to regain privileges:
    RLIMIT_NPROC never binds uid 0. (setpriv rather than Popen(user=...): Popen then has to fork
    instead of vfork, which costs ~0.3 s per run in a process of a few GB, like a trainer.)"""
    if os.geteuid() != 0:
        return []
    return [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--no-new-privs", "--"]


def _namespaces(status_fd: int) -> list[str]:
    """Every namespace new (user, mount, pid, network, ipc, uts, cgroup), no nested user
    namespaces (so no mounting of unbounded tmpfs inside), uid ``nobody``, no controlling terminal,
    killed with its parent; the command runs as the namespace's pid 1."""
    return ["--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(NOBODY), "--gid", str(NOBODY),
            "--as-pid-1", "--die-with-parent", "--new-session", "--hostname", "sandbox",
            "--json-status-fd", str(status_fd)]  # fmt: skip


def _filesystem(limits: Limits, code_fd: int) -> list[str]:
    """A read-only root with ``/usr`` (no ``/usr/local``), fresh ``/proc``, minimal read-only
    ``/dev``, the program at ``/main.py`` and a private size-capped tmpfs ``/sandbox`` (also
    ``/tmp``) as the only writable place."""
    return [
        *_system_binds(),
        "--tmpfs", "/usr/local",
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(limits.disk_mb << 20), "--tmpfs", "/sandbox",
        "--perms", "0444", "--ro-bind-data", str(code_fd), "/main.py",
        "--symlink", "sandbox", "/tmp",
        "--remount-ro", "/usr/local", "--remount-ro", "/dev", "--remount-ro", "/",
        "--chdir", "/sandbox",
    ]  # fmt: skip


def _system_binds() -> list[str]:
    """``/usr`` read-only, plus the top-level links (``/lib -> usr/lib``) or directories the
    dynamic loader needs on systems without merged ``/usr``."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = f"/{name}"
        if os.path.islink(host):
            args += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            args += ["--ro-bind", host, host]
    return args


def _environment() -> list[str]:
    args = ["--clearenv"]
    for name, value in ENVIRONMENT.items():
        args += ["--setenv", name, value]
    return args
