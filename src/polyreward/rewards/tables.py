"""Table structure rewards: TEDS-Struct between LaTeX ``tabular`` and HTML tables.

TEDS (Zhong et al., "Image-based table recognition", ECCV 2020, the PubTabNet metric) with
``structure_only=True``: both tables become trees ``table -> tr -> td`` whose cells carry only
``(colspan, rowspan)``; with unit insert/delete costs and a rename cost of 1 when tag or spans
differ, ``TEDS_s = 1 - APTED(pred, ref) / max(n_pred, n_ref)``, ``n`` = nodes below ``<table>``.

**LaTeX to tree.** The first ``tabular``/``tabular*``/``tabularx``/``tabulary``/``longtable``/
``array`` environment; comments and rule commands (``\\hline``, ``\\cline``, booktabs rules,
``\\cmidrule``, ``\\cdashline``, ...) are dropped; rows split at top-level ``\\\\`` (or
``\\tabularnewline``), cells at top-level ``&`` (nested braces and environments are respected);
``\\multicolumn{n}`` sets colspan and ``\\multirow{n}`` rowspan. Whitespace-only rows are dropped,
and short rows are padded with empty cells to the widest row, as in Table2LaTeX-RL's converter.
Following LaTeX, a row below a ``\\multirow`` still writes a (usually empty) placeholder cell in
the covered column; it is consumed as the placeholder. (The released Table2LaTeX-RL converter
places that placeholder in the next free column instead, which shifts the row; its scores differ
from ours on such tables.)

**HTML to tree.** The first ``<table>``; ``th`` is read as ``td``; ``thead``/``tbody``/``tfoot``
wrappers are removed by default (LaTeX has none); the content of cells is ignored, but nodes
inside cells are counted in ``n`` as in the PubTabNet code.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from polyreward.rewards._columns import column, sample_error
from polyreward.rewards.text import Completion, completion_text, extract_tag

SECTION_TAGS = ("thead", "tbody", "tfoot")


@dataclasses.dataclass
class TableNode:
    """A node of a table tree; ``size`` on the root is the TEDS node count ``n`` (nodes below the root)."""

    tag: str
    colspan: int = 1
    rowspan: int = 1
    children: list[TableNode] = dataclasses.field(default_factory=list)
    size: int = 0


# ---------------------------------------------------------------------------------------------- LaTeX
_ENV = re.compile(r"\\begin\s*\{(tabular\*?|tabularx|tabulary|longtable|array)\}")
_ENV_ARGS = {"tabular": 1, "tabular*": 2, "tabularx": 2, "tabulary": 2, "longtable": 1, "array": 1}
_RULES = re.compile(
    r"\\(?:hline|hdashline|toprule|midrule|bottomrule|morecmidrules|endfirsthead|endhead|endfoot|endlastfoot)\b"
    r"(?:\s*\[[^\]]*\])?"
    r"|\\(?:cline|cdashline|arrayrulecolor|noalign)\s*\{[^{}]*\}"
    r"|\\cmidrule\s*(?:\[[^\]]*\])?\s*(?:\([^)]*\))?\s*\{[^{}]*\}"
    r"|\\specialrule\s*\{[^{}]*\}\s*\{[^{}]*\}\s*\{[^{}]*\}"
    r"|\\addlinespace\s*(?:\[[^\]]*\])?"
)


def _group_end(text: str, i: int) -> int:
    """Index just after the ``{...}`` or ``[...]`` group opening at ``text[i]`` (len(text) if unclosed)."""
    opening, closing = text[i], "}" if text[i] == "{" else "]"
    depth, j = 0, i
    while j < len(text):
        if text[j] == "\\":
            j += 2  # an escaped character (\{, \]) does not open or close
            continue
        depth += (text[j] == opening) - (text[j] == closing)
        if depth == 0:
            return j + 1
        j += 1
    return len(text)


def _tabular_body(latex: str) -> str | None:
    """The body of the first tabular-like environment (after its column spec), or None."""
    match = _ENV.search(latex)
    if match is None:
        return None
    env, i, required = match.group(1), match.end(), _ENV_ARGS[match.group(1)]
    while required and i < len(latex):  # skip [pos] options and the required {width}{spec} groups
        if latex[i].isspace():
            i += 1
        elif latex[i] in "{[":
            required -= latex[i] == "{"
            i = _group_end(latex, i)
        else:
            break
    depth, pattern = 1, re.compile(rf"\\(begin|end)\s*\{{{re.escape(env)}\}}")
    for tok in pattern.finditer(latex, i):
        depth += 1 if tok.group(1) == "begin" else -1
        if depth == 0:
            return latex[i : tok.start()]
    return latex[i:]  # unterminated: read to the end


_NEWLINE = re.compile(r"\\\\\*?(?:\s*\[[^\]]*\])?|\\tabularnewline\b")
_BEGIN_END = re.compile(r"\\(begin|end)\s*\{[^{}]*\}")


def _split_top_level(body: str) -> list[list[str]]:
    """Rows of cells, split at ``\\\\``/``\\tabularnewline`` and ``&`` outside braces and nested environments."""
    rows: list[list[str]] = []
    cells: list[str] = []
    depth = env = start = i = 0
    while i < len(body):
        ch = body[i]
        top = depth == 0 and env == 0
        if ch == "\\":
            newline = _NEWLINE.match(body, i)
            if newline and top:
                cells.append(body[start:i])
                rows.append(cells)
                i = start = newline.end()
                cells = []
                continue
            begin_end = _BEGIN_END.match(body, i)
            if begin_end:
                env += 1 if begin_end.group(1) == "begin" else -1
                i = begin_end.end()
                continue
            i += 2  # a command's first letter or an escaped character (\&, \{, \%)
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(depth - 1, 0)
        elif ch == "&" and top:
            cells.append(body[start:i])
            start = i + 1
        i += 1
    cells.append(body[start:])
    rows.append(cells)
    return [r for r in rows if any(c.strip() for c in r) or len(r) > 1]


def _spans(cell: str) -> tuple[int, int]:
    """``(colspan, rowspan)`` from ``\\multicolumn{n}`` and ``\\multirow[..]{n}`` (negative or 0 rowspans read as 1)."""
    col = re.search(r"\\multicolumn\s*\{\s*(\d+)\s*\}", cell)
    row = re.search(r"\\multirow\s*(?:\[[^\]]*\])?\s*\{\s*(-?\d+)\s*\}", cell)
    return max(int(col.group(1)), 1) if col else 1, max(int(row.group(1)), 1) if row else 1


def latex_table_tree(latex: str) -> TableNode | None:
    """The structure tree of the first tabular environment in ``latex``; None when there is none."""
    body = _tabular_body(re.sub(r"(?<!\\)%.*$", "", latex, flags=re.M))
    if body is None:
        return None
    rows = _split_top_level(_RULES.sub(" ", body))
    covered: set[tuple[int, int]] = set()  # (row, col) taken by a rowspan from above or a colspan
    anchors: dict[tuple[int, int], tuple[int, int]] = {}
    for r, cells in enumerate(rows):
        c = 0
        for cell in cells:
            colspan, rowspan = _spans(cell)
            if (r, c) in covered:  # LaTeX's placeholder cell under a \multirow
                c += colspan
                continue
            anchors[(r, c)] = (colspan, rowspan)
            covered.update((r + dr, c + dc) for dr in range(rowspan) for dc in range(colspan))
            c += colspan
    n_rows = max([r + 1 for r, _ in covered] + [len(rows)])
    width = max([c + 1 for _, c in covered], default=0)
    root = TableNode("table")
    for r in range(n_rows):
        row = TableNode("tr")
        for c in range(width):
            if (r, c) in anchors:
                row.children.append(TableNode("td", *anchors[(r, c)]))
            elif (r, c) not in covered:
                row.children.append(TableNode("td"))  # padding of a short row
        root.children.append(row)
    root.size = n_rows + sum(len(row.children) for row in root.children)
    return root


# ---------------------------------------------------------------------------------------------- HTML
def html_table_tree(html: str, ignore_nodes: Sequence[str] = SECTION_TAGS) -> TableNode | None:
    """The structure tree of the first ``<table>`` in ``html``; None when there is none."""
    from lxml import etree
    from lxml import html as lxml_html

    if not html.strip():
        return None
    try:
        doc = lxml_html.fromstring(html.encode("utf-8"), parser=lxml_html.HTMLParser(remove_comments=True, encoding="utf-8"))
    except etree.ParserError:
        return None
    table = next(iter(doc.iter("table")), None)
    if table is None:
        return None
    if ignore_nodes:
        etree.strip_tags(table, *ignore_nodes)
    root = _html_node(table)
    root.size = sum(1 for e in table.iterdescendants() if isinstance(e.tag, str))
    return root


def _html_node(element: Any) -> TableNode:
    tag = "td" if element.tag == "th" else element.tag
    if tag == "td":
        return TableNode("td", _int_attr(element, "colspan"), _int_attr(element, "rowspan"))
    return TableNode(tag, children=[_html_node(e) for e in element if isinstance(e.tag, str)])


def _int_attr(element: Any, name: str) -> int:
    match = re.match(r"\s*(\d+)", element.get(name, "1"))
    return max(int(match.group(1)), 1) if match else 1


# ---------------------------------------------------------------------------------------------- TEDS
def table_tree(text: str, ignore_nodes: Sequence[str] = SECTION_TAGS) -> TableNode | None:
    """The first table in ``text``, LaTeX or HTML, whichever starts first; None when there is none."""
    latex, html = _ENV.search(text), re.search(r"<table\b", text, flags=re.I)
    if latex and (html is None or latex.start() < html.start()):
        return latex_table_tree(text)
    return html_table_tree(text, ignore_nodes) if html else None


def _apted_config() -> Any:
    from apted import Config

    class StructureConfig(Config):
        def rename(self, a: TableNode, b: TableNode) -> int:
            return int((a.tag, a.colspan, a.rowspan) != (b.tag, b.colspan, b.rowspan))

        def children(self, node: TableNode) -> list[TableNode]:
            return node.children

    return StructureConfig()


def teds_structure(
    prediction: str | TableNode | None, reference: str | TableNode, ignore_nodes: Sequence[str] = SECTION_TAGS
) -> float:
    """TEDS-Struct in [0, 1] between two tables (LaTeX or HTML text, or trees).

    A prediction without a table scores 0.0; a reference without one raises ``ValueError``.
    ``1 - dist / max(n_pred, n_ref)`` is clipped at 0; two empty tables score 1.0.
    """
    from apted import APTED

    ref = reference if isinstance(reference, TableNode) else table_tree(reference, ignore_nodes)
    if ref is None:
        raise ValueError("the reference holds no LaTeX tabular or HTML <table>")
    pred = prediction if isinstance(prediction, TableNode) or prediction is None else table_tree(prediction, ignore_nodes)
    if pred is None:
        return 0.0
    distance = APTED(pred, ref, _apted_config()).compute_edit_distance()
    n = max(pred.size, ref.size)
    if n == 0:
        return 1.0 if distance == 0 else 0.0
    return max(0.0, 1.0 - distance / n)


def table2latex_structure_score(teds_s: float, threshold: float = 0.9) -> float:
    """Table2LaTeX-RL's structure reward: ``1.0 if TEDS_s > threshold else 0.0`` (threshold 0.9 in the released code)."""
    return 1.0 if teds_s > threshold else 0.0


# ---------------------------------------------------------------------------------------------- the reward
@dataclasses.dataclass(frozen=True)
class TableStructureReward:
    """Batched TEDS-Struct reward; build it with :func:`table_structure_reward`."""

    column: str
    threshold: float | None
    tag: str | None
    ignore_nodes: tuple[str, ...]
    name: str

    @property
    def __name__(self) -> str:
        return self.name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Completion], **columns: Any) -> list[float | None]:
        references = column(self.name, columns, self.column, len(completions))
        out: list[float | None] = []
        for i, (completion, reference) in enumerate(zip(completions, references, strict=True)):
            if reference is None:
                out.append(None)
                continue
            if not isinstance(reference, str):
                raise sample_error(self.name, i, self.column, f"expected LaTeX or HTML text, got {type(reference).__name__}")
            ref = table_tree(reference, self.ignore_nodes)
            if ref is None:
                raise sample_error(self.name, i, self.column, "the reference holds no LaTeX tabular or HTML <table>")
            text = completion_text(completion)
            text = extract_tag(text, self.tag) if self.tag is not None else text
            score = teds_structure(None if text is None else table_tree(text, self.ignore_nodes), ref)
            out.append(score if self.threshold is None else table2latex_structure_score(score, self.threshold))
        return out


def table_structure_reward(
    *,
    column: str = "answer",
    threshold: float | None = None,
    tag: str | None = None,
    ignore_nodes: Sequence[str] = SECTION_TAGS,
    name: str = "table_structure",
) -> TableStructureReward:
    """TEDS-Struct of the completion's first table against the ``column`` table (LaTeX or HTML).

    threshold: None gives TEDS_s itself; a number gives ``1.0 if TEDS_s > threshold else 0.0``.
    tag: read the table inside the last ``<tag>...</tag>`` (None: anywhere in the completion).
    A completion without a table scores 0.0; a reference without one raises (sample and column named).
    """
    if threshold is not None and not 0 <= threshold <= 1:
        raise ValueError(f"table_structure_reward: threshold must be in [0, 1] or None, got {threshold}")
    import apted  # noqa: F401  (fail at construction when it is not installed)
    import lxml  # noqa: F401

    return TableStructureReward(column, threshold, tag, tuple(ignore_nodes), name)


def table2latex_structure_reward(
    *, column: str = "answer", tag: str | None = None, name: str = "table2latex_structure"
) -> TableStructureReward:
    """Table2LaTeX-RL's structure reward (NeurIPS 2025, VSGRPO): ``1 if TEDS_s > 0.9 else 0``.

    The paper's second reward, visual CW-SSIM on pdflatex renders (``1 if > 0.6``), needs a TeX
    installation and is not provided; the trainer sums the two with weight 1.
    """
    return table_structure_reward(column=column, threshold=0.9, tag=tag, name=name)
