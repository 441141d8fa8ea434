"""The README's three-line example runs and prints what its comment promises."""

import contextlib
import io
import math
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_three_line_example_prints_hand_computed_gdpo():
    code = re.search(r"## Three lines\s+```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) == 3
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    # pre-BN sums [sqrt3, 0, 0, -sqrt3] (each reward +-sqrt(3)/2); batch std sqrt(2) -> +-sqrt(3/2)
    expected = math.sqrt(1.5)
    numbers = [float(x) for x in re.findall(r"-?\d+\.\d+", out.getvalue())]
    assert [round(x, 4) for x in numbers] == [round(expected, 4), 0.0, 0.0, round(-expected, 4)]
    assert "tensor([ 1.2247,  0.0000,  0.0000, -1.2247])" in code  # the comment shows the real output
