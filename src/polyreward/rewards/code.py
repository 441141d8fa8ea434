"""Code rewards, run in :mod:`polyreward.sandbox`: unit tests for generated programs, and rewards
defined by generated code (Language to Rewards, Yu et al. 2023, arXiv 2306.08647).

- :func:`code_test_reward`: the fraction of a sample's tests the completion's program passes.
  Tests come from a dataset column, one list per sample; each test is either a pair
  ``(stdin, expected_stdout)`` or a string of assert-style Python run after the program.
- :func:`generated_reward`: the reward is computed by generated code (from a dataset column, or
  the completion itself) that defines ``def reward(sample) -> float``; the code runs only in the
  sandbox, gets the sample as JSON on stdin, and its return value is the reward. Code that fails
  raises :class:`GeneratedRewardError` naming the sample, for the reward set's failure policy.

Both return TRL-style batched functions ``fn(prompts, completions, **columns) -> list[float | None]``
(picklable frozen dataclasses with a ``__name__``) that run up to ``workers`` sandboxes at once.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import re
import secrets
from collections.abc import Sequence
from typing import Any, Literal

from polyreward import sandbox
from polyreward.rewards._columns import column
from polyreward.rewards.text import Completion, completion_text

CodeFrom = Literal["column", "completion"]
_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.S)
_OPEN_FENCE = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*)\Z", re.S | re.I)  # cut off before closing
_PYTHON_TAGS = {"python", "python3", "py"}


def extract_program(text: str) -> str:
    """The program in a completion: the last fenced block tagged ``python`` (or ``py``), else the
    last untagged fenced block, else a ``python`` block left open at the end, else the whole text."""
    blocks = _FENCE.findall(text)
    tagged = [code for tag, code in blocks if tag.lower() in _PYTHON_TAGS]
    untagged = [code for tag, code in blocks if not tag]
    if tagged or untagged:
        return (tagged or untagged)[-1]
    unclosed = _OPEN_FENCE.search(text)
    return unclosed.group(1) if unclosed else text


def normalize_output(text: str) -> str:
    """Output as compared by stdin/stdout tests: trailing whitespace of each line and trailing
    blank lines dropped (leading whitespace and blank lines in between count)."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class _Limits:
    timeout_s: float
    memory_mb: int
    max_processes: int
    workers: int

    def __post_init__(self) -> None:
        if not (isinstance(self.workers, int) and self.workers >= 1):
            raise ValueError(f"code reward: workers must be an int >= 1, got {self.workers!r}")
        sandbox.Limits(
            timeout_s=self.timeout_s,
            cpu_s=self.timeout_s,
            memory_mb=self.memory_mb,
            max_processes=self.max_processes,
            max_output_bytes=1,
            disk_mb=1,
        )  # validates

    def run(self, code: str, stdin: str | None) -> sandbox.SandboxResult:
        return sandbox.run(
            code, stdin=stdin, timeout_s=self.timeout_s, memory_mb=self.memory_mb, max_processes=self.max_processes
        )

    def run_all(self, jobs: Sequence[tuple[str, str | None]]) -> list[sandbox.SandboxResult]:
        """``[(code, stdin)]`` -> results, ``workers`` sandboxes at a time."""
        if len(jobs) <= 1 or self.workers == 1:
            return [self.run(code, stdin) for code, stdin in jobs]
        with concurrent.futures.ThreadPoolExecutor(min(self.workers, len(jobs))) as pool:
            return list(pool.map(lambda job: self.run(*job), jobs))


# ---------------------------------------------------------------------------------------------- unit tests
@dataclasses.dataclass(frozen=True)
class _Test:
    """One sandbox run: the code, its stdin, and what passing means (``expected`` stdout, or the
    ``token`` printed by the last line of the test code, so an early ``exit(0)`` does not pass)."""

    code: str
    stdin: str | None
    expected: str | None = None
    token: str | None = None

    def passed(self, result: sandbox.SandboxResult) -> bool:
        if not result.ok:
            return False
        if self.token is not None:
            lines = result.stdout.rstrip("\n").split("\n")
            return lines[-1] == self.token
        return normalize_output(result.stdout) == normalize_output(self.expected or "")


def _tests_of(reward: str, index: int, program: str, cases: Any) -> list[_Test] | None:
    if cases is None:
        return None
    if isinstance(cases, (str, bytes)) or not isinstance(cases, Sequence):
        raise ValueError(
            f"reward {reward!r}: sample {index}: tests must be a list of (stdin, expected_stdout) pairs "
            f"or assert-code strings, got {type(cases).__name__}"
        )
    tests = []
    for case in cases:
        if isinstance(case, str):
            token = f"all tests passed {secrets.token_hex(8)}"
            tests.append(_Test(f"{program}\n\n{case}\nprint({token!r})\n", None, token=token))
        elif isinstance(case, Sequence) and len(case) == 2 and all(isinstance(part, str) for part in case):
            tests.append(_Test(program, case[0], expected=case[1]))
        else:
            raise ValueError(
                f"reward {reward!r}: sample {index}: a test must be a (stdin, expected_stdout) pair of "
                f"strings or a string of assert code, got {case!r:.120}"
            )
    return tests or None


@dataclasses.dataclass(frozen=True)
class CodeTestReward:
    """Batched reward: the fraction of a sample's tests its program passes (see :func:`code_test_reward`)."""

    name: str
    tests_column: str
    limits: _Limits

    @property
    def __name__(self) -> str:
        return self.name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Completion], **columns: Any) -> list[float | None]:
        tests = column(self.name, columns, self.tests_column, len(completions))
        per_sample = [
            _tests_of(self.name, i, extract_program(completion_text(c)), cases)
            for i, (c, cases) in enumerate(zip(completions, tests, strict=True))
        ]
        jobs = [test for sample in per_sample if sample for test in sample]
        results = iter(self.limits.run_all([(test.code, test.stdin) for test in jobs]))
        scores: list[float | None] = []
        for sample in per_sample:
            if sample is None:
                scores.append(None)
                continue
            passed = sum(test.passed(next(results)) for test in sample)
            scores.append(passed / len(sample))
        return scores


def code_test_reward(
    *,
    tests_column: str = "tests",
    timeout_s: float = 2.0,
    memory_mb: int = 256,
    max_processes: int = 16,
    workers: int = 4,
    name: str = "code_tests",
) -> CodeTestReward:
    """Reward = fraction of tests passed by the program in the completion (partial credit).

    The program is the completion's last fenced ``python`` block (else the whole text, see
    :func:`extract_program`). ``columns[tests_column][i]`` holds sample i's tests, a list whose
    items are either:

    - ``(stdin, expected_stdout)``: the program runs with that stdin and passes when it exits 0
      and its stdout equals ``expected_stdout`` up to trailing whitespace (:func:`normalize_output`);
    - a string of test code (``assert f(2) == 4``): appended to the program and run as one script
      (with empty stdin); passes when all of it runs and exits 0.

    Each test is one sandbox run (``timeout_s`` wall clock, ``memory_mb`` per process); a test that
    times out, crashes or runs out of memory fails. ``None`` (not applicable) for a sample whose
    tests are None or empty. A malformed test raises ValueError naming the sample.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"code_test_reward: name must be a non-empty string, got {name!r}")
    return CodeTestReward(name, tests_column, _Limits(timeout_s, memory_mb, max_processes, workers))


# ---------------------------------------------------------------------------------------------- Language to Rewards
class GeneratedRewardError(RuntimeError):
    """Generated reward code failed on a sample (raised, never turned into 0): ``sample`` is its
    index in the batch; the message says what happened and ends with the code's own error."""

    def __init__(self, reward: str, sample: int, cause: str, *, batch_size: int):
        self.reward, self.sample, self.cause = reward, sample, cause
        where = f"sample {sample}: " if batch_size > 1 else ""  # a batch of one: the reward set names the sample
        super().__init__(f"reward {reward!r}: {where}the generated reward code {cause}")


_HARNESS = """\
import json, math, sys
_source = {source!r}
_sample = json.loads(sys.stdin.read())
_namespace = {{"__name__": "reward_code"}}
exec(compile(_source, "<reward code>", "exec"), _namespace)
_fn = _namespace.get({entry!r})
if not callable(_fn):
    sys.exit("defines no function {entry}(sample)")
_value = _fn(_sample)
if not isinstance(_value, (int, float)) or not math.isfinite(_value):
    sys.exit(f"made {entry}(sample) return {{_value!r:.200}}, expected a finite number")
print({token!r}, repr(float(_value)))
"""


def _parse_reward(result: sandbox.SandboxResult, token: str, limits: _Limits) -> float | str:
    """The reward the harness printed, or a description of what went wrong."""
    if result.status == "timeout":
        return f"timed out after {limits.timeout_s:g} s"
    if result.status == "memory":
        return f"ran out of memory ({limits.memory_mb} MiB per process)"
    if result.status != "ok":
        detail = result.stderr.strip().splitlines()[-1:] or ["(no error message)"]
        return f"{'was killed' if result.status == 'killed' else 'failed'} (exit {result.returncode}): {detail[0]:.300}"
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(token + " "):
            return float(line[len(token) + 1 :])
    return "exited before returning a reward"


@dataclasses.dataclass(frozen=True)
class GeneratedReward:
    """Batched reward computed by generated code in the sandbox (see :func:`generated_reward`)."""

    name: str
    code_from: CodeFrom
    code_column: str
    columns: tuple[str, ...]
    entry_point: str
    limits: _Limits
    # (code, sample JSON) -> reward or failure, so the reward set's per-sample retry after a
    # failing batch does not run every sandbox again; bounded, touched only by the calling thread
    _cache: collections.OrderedDict = dataclasses.field(default_factory=collections.OrderedDict, compare=False, repr=False)
    _cache_size = 1024

    @property
    def __name__(self) -> str:
        return self.name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Completion], **columns: Any) -> list[float | None]:
        n = len(completions)
        if len(prompts) != n:
            raise ValueError(f"reward {self.name!r}: {len(prompts)} prompts for {n} completions")
        codes = (column(self.name, columns, self.code_column, n) if self.code_from == "column"
                 else [completion_text(c) for c in completions])  # fmt: skip
        extra = {key: column(self.name, columns, key, n) for key in self.columns}
        keys = [None if not code else (extract_program(code), self._sample_json(i, prompts[i], completions[i], extra))
                for i, code in enumerate(codes)]  # fmt: skip
        self._compute([key for key in dict.fromkeys(keys) if key is not None and key not in self._cache])
        outcomes = [None if key is None else self._cache[key] for key in keys]
        failed = [(i, outcome) for i, outcome in enumerate(outcomes) if isinstance(outcome, str)]
        if failed:
            i, cause = failed[0]
            more = f" ({len(failed) - 1} more samples failed)" if len(failed) > 1 else ""
            raise GeneratedRewardError(self.name, i, cause + more, batch_size=n)
        return outcomes

    def _sample_json(self, index: int, prompt: Any, completion: Completion, extra: dict[str, Sequence[Any]]) -> str:
        sample = {"prompt": prompt if isinstance(prompt, str) else completion_text(prompt)}
        if self.code_from == "column":
            sample["completion"] = completion_text(completion)
        sample.update({key: values[index] for key, values in extra.items()})
        try:
            return json.dumps(sample, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"reward {self.name!r}: sample {index}: the sample must be JSON for the reward code "
                f"(columns {list(extra)}): {err}"
            ) from err

    def _compute(self, keys: list[tuple[str, str]]) -> None:
        tokens = [f"reward {secrets.token_hex(8)}" for _ in keys]
        harnesses = [_HARNESS.format(source=code, entry=self.entry_point, token=token)
                     for (code, _), token in zip(keys, tokens, strict=True)]  # fmt: skip
        results = self.limits.run_all([(harness, stdin) for harness, (_, stdin) in zip(harnesses, keys, strict=True)])
        for key, token, result in zip(keys, tokens, results, strict=True):
            self._cache[key] = _parse_reward(result, token, self.limits)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


def generated_reward(
    *,
    code_from: CodeFrom = "column",
    code_column: str = "reward_code",
    columns: Sequence[str] = (),
    entry_point: str = "reward",
    timeout_s: float = 2.0,
    memory_mb: int = 256,
    max_processes: int = 16,
    workers: int = 4,
    name: str = "generated_reward",
) -> GeneratedReward:
    """A reward defined by generated Python code (Language to Rewards, arXiv 2306.08647), run in the sandbox.

    code_from: ``"column"``: ``columns[code_column][i]`` holds sample i's reward code (written
        by a model from the task's description, say) and the completion is what it scores;
        ``"completion"``: the completion itself is the reward code (a model that writes rewards).
        Fenced code is unwrapped as in :func:`extract_program`.
    columns: dataset columns added to the sample the code sees.

    The code must define ``def reward(sample) -> float`` (``entry_point``). ``sample`` is a dict
    decoded from JSON: ``"prompt"`` (text), ``"completion"`` (text; only with
    ``code_from="column"``) and each of ``columns``. The code runs in a fresh sandbox per sample
    (standard library only, ``timeout_s``, ``memory_mb``) and its return value, a finite number
    (or bool), is the reward; what it prints is ignored. ``None`` (not applicable) where the code is None or
    empty. Code that does not compile, raises, returns a non-number, times out or runs out of
    memory raises :class:`GeneratedRewardError` naming the sample, which the reward set's failure
    policy handles (``on_error``). Results are cached per (code, sample) so a retry is free.
    """
    if code_from not in ("column", "completion"):
        raise ValueError(f"generated_reward: code_from must be 'column' or 'completion', got {code_from!r}")
    if not entry_point.isidentifier():
        raise ValueError(f"generated_reward: entry_point must be a Python identifier, got {entry_point!r}")
    if not name or not isinstance(name, str):
        raise ValueError(f"generated_reward: name must be a non-empty string, got {name!r}")
    return GeneratedReward(
        name, code_from, code_column, tuple(columns), entry_point, _Limits(timeout_s, memory_mb, max_processes, workers)
    )
