"""Every ```python block in docs/ that is followed by a ```text block prints exactly that text."""

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
# The code may not contain a fence: a python block without output must not swallow the blocks after it.
EXAMPLE = re.compile(r"```python\n((?:(?!```).)*?)```\n\n?```text\n(.*?)```", re.S)
CASES = [
    pytest.param(code, expected, id=f"{path.relative_to(DOCS)}#{n}")
    for path in sorted(DOCS.rglob("*.md"))
    for n, (code, expected) in enumerate(EXAMPLE.findall(path.read_text()))
]


def test_docs_have_examples():
    assert len(CASES) >= 15


@pytest.mark.parametrize(("code", "expected"), CASES)
def test_doc_example_output(code, expected):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<doc example>", "exec"), {})
    assert out.getvalue() == expected
