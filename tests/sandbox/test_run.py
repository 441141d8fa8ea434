"""Ordinary programs in the sandbox: results, statuses, stdin/stdout/stderr, limits that still let
normal work through, concurrency, and clear errors."""

from __future__ import annotations

import concurrent.futures

import pytest

from polyreward import sandbox
from polyreward.sandbox import bwrap

LIMITS = {"timeout_s": 2.0, "memory_mb": 256}


def test_ok_program_prints():
    result = sandbox.run("print(1 + 1)", **LIMITS)
    assert (result.status, result.returncode, result.stdout, result.stderr) == ("ok", 0, "2\n", "")
    assert result.ok and not result.stdout_truncated and not result.stderr_truncated
    assert 0 < result.elapsed_s < LIMITS["timeout_s"] and result.cpu_s >= 0


@pytest.mark.parametrize("data", ["héllo\nwörld\n", b"raw \xff bytes"])
def test_stdin_is_echoed(data):
    result = sandbox.run("import sys\nsys.stdout.buffer.write(sys.stdin.buffer.read())", stdin=data, **LIMITS)
    expected = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
    assert result.ok and result.stdout == expected


def test_large_stdin_is_read_whole():
    data = "x" * (3 << 20)
    result = sandbox.run("import sys\nprint(len(sys.stdin.read()))", stdin=data, **LIMITS)
    assert result.stdout == f"{len(data)}\n"


def test_no_stdin_reads_empty():
    assert sandbox.run("import sys\nprint(repr(sys.stdin.read()))", **LIMITS).stdout == "''\n"


def test_error_exit_code_and_stderr_are_kept():
    result = sandbox.run("import sys\nprint('out')\nprint('oops', file=sys.stderr)\nsys.exit(3)", **LIMITS)
    assert (result.status, result.returncode, result.stdout, result.stderr) == ("error", 3, "out\n", "oops\n")


def test_exception_traceback_shows_the_source_line():
    result = sandbox.run("x = 1\nraise ValueError('bad value')", **LIMITS)
    assert result.status == "error" and result.returncode == 1
    assert 'File "/main.py", line 2' in result.stderr and "raise ValueError('bad value')" in result.stderr
    assert result.stderr.endswith("ValueError: bad value\n")


def test_syntax_error_is_an_error():
    assert sandbox.run("def f(:\n", **LIMITS).status == "error"


def test_killed_by_a_signal():
    result = sandbox.run("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)", **LIMITS)
    assert (result.status, result.returncode) == ("killed", 128 + 15)


def test_memory_error_is_memory():
    result = sandbox.run("x = bytearray(1 << 30)", timeout_s=2.0, memory_mb=128)
    assert result.status == "memory" and "MemoryError" in result.stderr


def test_timeout_has_no_returncode():
    result = sandbox.run("import time\ntime.sleep(5)", timeout_s=0.3, memory_mb=128)
    assert (result.status, result.returncode) == ("timeout", None)
    assert 0.3 <= result.elapsed_s < 0.8


def test_working_directory_and_tmp_are_private_and_writable():
    code = (
        "import os, tempfile\nopen('a.txt', 'w').write('A')\nwith tempfile.NamedTemporaryFile(dir=None) as f:\n"
        "    f.write(b'x')\n    print(os.path.dirname(f.name))\n"
        "print(os.getcwd(), sorted(os.listdir('.')), open('/tmp/a.txt').read())"
    )
    result = sandbox.run(code, **LIMITS)
    assert result.stdout.splitlines() == ["/sandbox", "/sandbox ['a.txt'] A"]


def test_files_do_not_survive_between_runs():
    sandbox.run("open('left.txt', 'w').write('x')", **LIMITS)
    assert sandbox.run("import os\nprint(os.listdir('.'))", **LIMITS).stdout == "[]\n"


def test_a_few_subprocesses_and_threads_are_fine():
    code = (
        "import subprocess, sys, threading\nouts = [subprocess.run([sys.executable, '-c', f'print({i})'],"
        " capture_output=True, text=True).stdout.strip() for i in range(3)]\n"
        "threads = [threading.Thread(target=lambda: None) for _ in range(4)]\n"
        "[t.start() for t in threads]\n[t.join() for t in threads]\nprint(outs)"
    )
    assert sandbox.run(code, **LIMITS).stdout == "['0', '1', '2']\n"


def test_standard_library_only_and_isolated_mode():
    code = "import sys, json, math, re, collections\nprint(sys.flags.isolated, sys.flags.no_site, sys.executable)"
    assert sandbox.run(code, **LIMITS).stdout == "1 1 /usr/bin/python3\n"


def test_output_cap_truncates_and_flags():
    result = sandbox.run("print('a' * 100)\nimport sys\nprint('b' * 100, file=sys.stderr)", max_output_bytes=10, **LIMITS)
    assert result.stdout == "a" * 10 and result.stderr == "b" * 10
    assert result.stdout_truncated and result.stderr_truncated and result.ok


def test_concurrent_runs_are_isolated_from_each_other():
    code = (
        "import os, sys, time\nopen('mine', 'w').write(sys.stdin.read())\ntime.sleep(0.2)\n"
        "print(os.listdir('.'), open('mine').read())"
    )
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: sandbox.run(code, stdin=str(i), **LIMITS), range(8)))
    assert [r.stdout for r in results] == [f"['mine'] {i}\n" for i in range(8)]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"timeout_s": 0}, "timeout_s must be a finite number"),
        ({"timeout_s": float("inf")}, "timeout_s must be a finite number"),
        ({"memory_mb": 0}, "memory_mb must be an int >= 1"),
        ({"memory_mb": 1.5}, "memory_mb must be an int >= 1"),
        ({"max_processes": 1}, "max_processes must be >= 2"),
        ({"cpu_s": -1.0}, "cpu_s must be a finite number"),
        ({"disk_mb": True}, "disk_mb must be an int >= 1"),
    ],
)
def test_bad_limits_are_rejected(limits, message):
    with pytest.raises(ValueError, match=message):
        sandbox.run("print(1)", **{**LIMITS, **limits})


def test_code_must_be_text():
    with pytest.raises(TypeError, match="code must be Python source as str"):
        sandbox.run(b"print(1)", **LIMITS)


def test_missing_bubblewrap_names_the_install_command(monkeypatch):
    monkeypatch.setattr(bwrap.shutil, "which", lambda name: None)
    with pytest.raises(sandbox.SandboxError, match=r"bubblewrap \(bwrap\) is not installed.*apt-get install -y bubblewrap"):
        sandbox.run("print(1)", **LIMITS)


def test_bubblewrap_failing_to_start_is_an_error_not_a_result(monkeypatch):
    def broken(*args):
        argv = bwrap.command(*args)
        at = argv.index("--unshare-all")
        return [*argv[:at], "--no-such-option", *argv[at:]]

    monkeypatch.setattr(sandbox, "command", broken)
    with pytest.raises(sandbox.SandboxError, match="bubblewrap could not start the sandbox"):
        sandbox.run("print(1)", **LIMITS)
