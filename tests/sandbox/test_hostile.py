"""Hostile programs: each must end within its limits with the right status, and leave this
process, its files, its environment and its network untouched (conftest checks no process is
left behind after every test)."""

from __future__ import annotations

import ast
import dataclasses
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

import polyreward
from polyreward import sandbox
from polyreward.rewards import RewardSet
from polyreward.rewards.code import code_test_reward
from polyreward.sandbox.bwrap import ENVIRONMENT

PROJECT = Path(polyreward.__file__).resolve().parents[2]  # the caller's project: world-readable on the host
LIMITS = {"timeout_s": 1.0, "memory_mb": 256, "max_processes": 16, "disk_mb": 8, "max_output_bytes": 1 << 16}
KILL_GRACE_S = 0.5  # the most a run may overrun its wall-clock limit (killing and reaping)


@dataclasses.dataclass(frozen=True)
class Case:
    """A hostile program (a template: ``{canary}``, ``{parent_pid}``, ... are filled in), the
    statuses it may end with, extra limits, and a check of its result."""

    name: str
    code: str
    statuses: frozenset[str]
    limits: dict = dataclasses.field(default_factory=dict)
    expect: Callable[[sandbox.SandboxResult, dict], bool] = lambda result, where: True


def case(name, code, statuses, expect=None, **limits):
    return pytest.param(Case(name, code, frozenset(statuses.split()), limits, expect or (lambda r, w: True)), id=name)


TIME = [
    case("infinite_loop", "while True: pass", "timeout"),
    case("sleep_forever", "import time; time.sleep(3600)", "timeout"),
    case(
        "cpu_limit_before_wall_clock",
        "while True: pass",
        "timeout",
        timeout_s=30.0,  # generous: on a loaded machine 1 CPU-second takes several wall seconds
        cpu_s=1.0,
        expect=lambda r, w: r.returncode == 152 and r.cpu_s < 3.0,
    ),  # SIGXCPU
    case(
        "ignores_sigxcpu",
        "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True: pass",
        "timeout",
        timeout_s=30.0,
        cpu_s=1.0,
        expect=lambda r, w: r.returncode == 137 and r.cpu_s < 4.0,  # the hard CPU limit's SIGKILL, not the wall clock
    ),
    case(
        "ignores_every_signal",
        "import signal\nfor s in range(1, 65):\n    try:\n"
        "        signal.signal(s, signal.SIG_IGN)\n    except (OSError, ValueError, RuntimeError):\n        pass\n"
        "while True: pass",
        "timeout",
    ),
    case("closes_stdio_then_spins", "import os\nos.close(1)\nos.close(2)\nwhile True: pass", "timeout"),
    case(
        "daemon_outlives_main",
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        time.sleep(3600)\n    os._exit(0)\nprint('main done')",
        "ok",
        expect=lambda r, w: r.stdout == "main done\n" and r.elapsed_s < 0.9,
    ),  # conftest: the daemon is gone
]

PROCESSES = [
    case("fork_bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", "timeout"),
    case(
        "counts_forks",
        "import os, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(3600)\n    n += 1\nprint(n)",
        "ok",
        expect=lambda r, w: 0 < int(r.stdout) <= LIMITS["max_processes"] - 2,
    ),  # pid 1 and the program count too
    case(
        "subprocess_bomb",
        "import subprocess, sys\nkids = []\nwhile True:\n    try:\n        kids.append(subprocess.Popen("
        "[sys.executable, '-c', 'import time; time.sleep(3600)']))\n    except OSError:\n        pass",
        "timeout",
    ),
    case(
        "thread_bomb",
        "import threading, time\nn = 0\ntry:\n    while True:\n        threading.Thread("
        "target=time.sleep, args=(3600,), daemon=True).start()\n        n += 1\nexcept RuntimeError:\n    print(n)",
        "ok",
        expect=lambda r, w: 0 < int(r.stdout) <= LIMITS["max_processes"] - 2,
    ),
]

MEMORY = [
    case("one_huge_allocation", "x = bytearray(8 << 30)", "memory"),
    case(
        "growing_list",
        "x = []\nwhile True:\n    x.append(bytearray(1 << 20))",
        "memory",
        expect=lambda r, w: "MemoryError" in r.stderr,
    ),
    case(
        "reports_its_peak_memory",
        "import resource\nx = []\ntry:\n    while True:\n        x.append(bytearray(1 << 20))\n"
        "except MemoryError:\n    del x\n    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)",
        "ok",
        expect=lambda r, w: 100 < int(r.stdout) <= LIMITS["memory_mb"],
    ),  # resident MiB when it hit the limit
    case(
        "memory_bomb_in_children",
        "import os\nfor _ in range(4):\n    if os.fork() == 0:\n        x = []\n"
        "        while True:\n            x.append(bytearray(1 << 20))\nwhile True:\n    try:\n        os.wait()\n"
        "    except ChildProcessError:\n        break",
        "ok",
        timeout_s=3.0,
        memory_mb=128,
        expect=lambda r, w: r.stderr.count("MemoryError") == 4,
    ),
    case(
        "c_stack_overflow",
        "import sys\nsys.setrecursionlimit(10**9)\nx = []\nfor _ in range(10**6):\n    x = [x]\nprint(repr(x))",
        "killed",
        timeout_s=20.0,  # building the nested list takes ~0.5 s on a quiet machine
        expect=lambda r, w: r.returncode == 128 + 11,
    ),  # SIGSEGV
    case(
        "fills_the_disk",
        "n = 0\ntry:\n    while True:\n        with open(f'fill{{n}}', 'wb') as f:\n"
        "            f.write(b'x' * (1 << 20))\n        n += 1\nexcept OSError as e:\n    print(n, e.errno)",
        "ok",
        expect=lambda r, w: int(r.stdout.split()[0]) <= LIMITS["disk_mb"],
    ),
    case("one_giant_file", "open('/tmp/big', 'wb').write(b'x' * (64 << 20))", "error"),
]

OUTPUT = [
    case(
        "endless_stdout",
        "while True:\n    print('x' * 10000)",
        "timeout",
        expect=lambda r, w: r.stdout_truncated and len(r.stdout) == LIMITS["max_output_bytes"],
    ),
    case(
        "one_huge_write",
        "import sys\nsys.stdout.write('y' * (32 << 20))",
        "ok",
        expect=lambda r, w: r.stdout_truncated and r.stdout == "y" * LIMITS["max_output_bytes"],
    ),
    case(
        "endless_stderr",
        "import sys\nwhile True:\n    sys.stderr.write('e' * 10000)",
        "timeout",
        expect=lambda r, w: r.stderr_truncated and len(r.stderr) == LIMITS["max_output_bytes"],
    ),
    case(
        "binary_garbage",
        "import sys\nsys.stdout.buffer.write(bytes(range(256)) * 100)",
        "ok",
        expect=lambda r, w: "\ufffd" in r.stdout and not r.stdout_truncated,
    ),
]

FILES = [
    case(
        "reads_caller_files",
        "import glob\nfor path in [{canary!r}, {project_file!r}, '/root/.bashrc', '/etc/shadow',"
        " '/etc/passwd', f'/proc/{parent_pid}/environ'] + glob.glob('/home/*/*'):\n    try:\n"
        "        print(path, open(path).read())\n    except OSError as e:\n        print(path, type(e).__name__)",
        "ok",
        expect=lambda r, w: r.stdout.count("FileNotFoundError") == 6 and "[project]" not in r.stdout,
    ),
    case("overwrites_canary", "open({canary!r}, 'w').write('pwned')", "error"),
    case("deletes_canary_dir", "import shutil\nshutil.rmtree({canary_dir!r})", "error"),
    case(
        "rm_rf_root",
        "import subprocess\nsubprocess.run(['rm', '-rf', '--no-preserve-root', '/'])",
        "ok timeout",
        expect=lambda r, w: "Read-only file system" in r.stderr and (PROJECT / "pyproject.toml").exists(),
    ),
    case(
        "lists_the_filesystem",
        "import os\nprint(sorted(os.listdir('/')))\n"
        "for top in ('/sandbox', '/dev', '/usr/local'):\n    for root, dirs, files in os.walk(top):\n"
        "        print(root, files)",
        "ok",
        expect=lambda r, w: (
            r.stdout.startswith("['bin', 'dev', 'lib', 'lib64', 'main.py', 'proc', 'sandbox', 'sbin', 'tmp', 'usr']")
            and "canary" not in r.stdout
        ),
    ),
    case(
        "escapes_through_proc",
        "import glob\nfor path in ['/proc/1/root/work', '/proc/self/root/root', '/proc/1/cwd/..']"
        " + glob.glob('/proc/*/environ') + ['/proc/self/mountinfo']:\n    try:\n        print(path, open(path).read())\n"
        "    except OSError as e:\n        print(path, type(e).__name__)",
        "ok",
        expect=lambda r, w: w["secret"] not in r.stdout and w["canary_dir"] not in r.stdout,
    ),
    case(
        "symlink_to_canary",
        "import os\nos.symlink({canary!r}, 'link')\nprint(open('link').read())",
        "error",
        expect=lambda r, w: "FileNotFoundError" in r.stderr,
    ),
    case(
        "writes_system_paths",
        "for path in ['/usr/evil', '/main.py', '/evil', '/dev/evil', '/dev/shm/evil', "
        "'/proc/sys/kernel/hostname', '/usr/local/evil']:\n    try:\n        open(path, 'w').write('x')\n"
        "        print(path, 'WRITTEN')\n    except OSError as e:\n        print(path, type(e).__name__)",
        "ok",
        expect=lambda r, w: "WRITTEN" not in r.stdout,
    ),
    case(
        "mounts_and_namespaces",
        "import ctypes, ctypes.util\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x10000000), libc.unshare(0x00020000), libc.setuid(0), libc.chroot(b'/sandbox'),"
        " libc.mount(b'none', b'/sandbox', b'tmpfs', 0, None))",
        "ok",
        expect=lambda r, w: r.stdout.split() == ["-1"] * 5,
    ),
]

ENVIRONMENT_AND_NETWORK = [
    case(
        "reads_environment",
        "import os\nprint(dict(os.environ))\nprint(open('/proc/self/environ').read())\n"
        "print(open('/proc/1/environ').read())",
        "ok",
        expect=lambda r, w: (
            w["secret"] not in r.stdout
            and "POLYREWARD_TEST_SECRET" not in r.stdout
            and set(ast.literal_eval(r.stdout.splitlines()[0])) == {*ENVIRONMENT, "PWD"}
        ),
    ),
    case(
        "tcp_to_internet",
        "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=0.5)",
        "error",
        expect=lambda r, w: "Network is unreachable" in r.stderr,
    ),
    case("dns_lookup", "import socket\nprint(socket.getaddrinfo('example.com', 80))", "error"),
    case(
        "tcp_to_host_listener",
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=0.5)",
        "error",
        expect=lambda r, w: "ConnectionRefusedError" in r.stderr,
    ),
    case(
        "unix_sockets_to_host",
        "import socket\nfor address in [{unix_path!r}, {abstract!r}]:\n"
        "    s = socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(address)\n        print('CONNECTED')\n"
        "    except OSError as e:\n        print(type(e).__name__)",
        "ok",
        expect=lambda r, w: r.stdout.split() == ["FileNotFoundError", "ConnectionRefusedError"],
    ),
    case(
        "udp_out", "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('8.8.8.8', 53))", "error"
    ),
]

SIGNALS_AND_IMPORTS = [
    case(
        "kills_parent_by_pid",
        "import os, signal\nfor sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGKILL):\n"
        "    try:\n        os.kill({parent_pid}, sig)\n    except OSError as e:\n        print(type(e).__name__)",
        "ok",
        expect=lambda r, w: r.stdout.split() == ["ProcessLookupError"] * 3,
    ),
    case(
        "kills_own_parent_and_init",
        "import os\nos.kill(os.getppid(), 9)\nos.kill(1, 9)\nprint('alive')",
        "ok",
        expect=lambda r, w: r.stdout == "alive\n",
    ),
    case(
        "kills_every_process",
        "import os\ntry:\n    os.kill(-1, 9)\nexcept OSError as e:\n    print(type(e).__name__)\nprint('alive')",
        "ok",
        expect=lambda r, w: r.stdout.endswith("alive\n"),
    ),
    case("kills_own_process_group", "import os\nos.killpg(0, 9)", "killed"),
    case(
        "signals_every_pid",
        "import os, signal\nhit = 0\nfor pid in range(2, 1 << 16):\n    try:\n"
        "        os.kill(pid, signal.SIGUSR1)\n        hit += 1\n    except OSError:\n        pass",
        "killed ok",
    ),
    case(
        "imports_caller_package",
        "import sys\nsys.path.insert(0, {project_src!r})\nimport polyreward",
        "error",
        expect=lambda r, w: "ModuleNotFoundError" in r.stderr,
    ),
    case(
        "imports_site_packages",
        "import site\nsite.main()\nimport numpy",
        "error",
        expect=lambda r, w: "ModuleNotFoundError" in r.stderr,
    ),
    case("rewrites_own_source", "open('/main.py', 'w').write('print(1)')", "error"),
    case(
        "shells_out",
        "import subprocess\nprint(subprocess.run('id; ls /work /root /home; cat /etc/passwd', shell=True,"
        " capture_output=True, text=True))",
        "ok",
        expect=lambda r, w: "uid=65534" in r.stdout and "No such file" in r.stdout,
    ),
]

HOSTILE = TIME + PROCESSES + MEMORY + OUTPUT + FILES + ENVIRONMENT_AND_NETWORK + SIGNALS_AND_IMPORTS


def test_at_least_thirty_hostile_programs():
    assert len(HOSTILE) >= 30


@pytest.fixture
def listeners():
    """A TCP listener on the host's loopback and two unix listeners (a world-writable path in the
    host's /tmp, and an abstract name)."""
    directory = Path(tempfile.mkdtemp(prefix="polyreward-socket-"))
    directory.chmod(0o777)
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(directory / "socket"))
    os.chmod(directory / "socket", 0o777)
    unix.listen()
    abstract = socket.socket(socket.AF_UNIX)
    abstract_name = f"\0polyreward-test-{secrets.token_hex(4)}"
    abstract.bind(abstract_name)
    abstract.listen()
    servers = [tcp, unix, abstract]
    for server in servers:
        server.setblocking(False)
    yield {"port": tcp.getsockname()[1], "unix_path": str(directory / "socket"), "abstract": abstract_name,
           "servers": servers}  # fmt: skip
    for server in servers:
        server.close()
    shutil.rmtree(directory)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_program_is_contained(hostile, canary, secret_env, parent_signals, listeners):
    where = {"canary": str(canary.file), "canary_dir": str(canary.dir), "parent_pid": os.getpid(),
             "project_file": str(PROJECT / "pyproject.toml"), "project_src": str(PROJECT / "src"),
             "secret": secret_env, **listeners}  # fmt: skip
    limits = {**LIMITS, **hostile.limits}
    result = sandbox.run(hostile.code.format(**where), **limits)

    assert result.status in hostile.statuses, result
    assert hostile.expect(result, where), result
    assert result.elapsed_s <= limits["timeout_s"] + KILL_GRACE_S, result
    assert result.cpu_s <= limits.get("cpu_s", limits["timeout_s"]) + 1.5, result
    assert len(result.stdout) <= limits["max_output_bytes"] and len(result.stderr) <= limits["max_output_bytes"]
    assert secret_env not in result.stdout + result.stderr
    assert canary.text not in result.stdout + result.stderr
    assert canary.intact(), "a file outside the sandbox was changed"
    assert parent_signals == [], f"the parent received signals {parent_signals}"
    for server in listeners["servers"]:
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing connected from inside
    assert (PROJECT / "pyproject.toml").read_text().startswith("[build-system]")


HOSTILE_COMPLETIONS = [
    "```python\nimport os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n```",
    "```python\nimport os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)\n```",
    "```python\nx = []\nwhile True:\n    x.append(bytearray(1 << 20))\n```",
    "```python\nwhile True:\n    print('spam' * 1000)\n```",
    "```python\nprint(int(input()) * 2)\n```",
]


def test_reward_set_keeps_running_through_hostile_completions(parent_signals):
    """A reward set scores a batch of hostile completions next to a correct one: the hostile ones
    get 0, the correct one 1, and the trainer's process is untouched."""
    reward = code_test_reward(timeout_s=1.0, memory_mb=256)
    tests = [[("2", "4"), ("5", "10")]] * len(HOSTILE_COMPLETIONS)
    with RewardSet([reward]) as rewards:
        scored = rewards.score(["double"] * 5, HOSTILE_COMPLETIONS, group_size=5, tests=tests)
    assert scored.batch[reward.__name__].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert scored.failures == [] and parent_signals == []
