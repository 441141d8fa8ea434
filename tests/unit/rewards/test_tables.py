import pickle

import pytest

from polyreward.rewards.tables import (
    html_table_tree,
    latex_table_tree,
    table2latex_structure_reward,
    table2latex_structure_score,
    table_structure_reward,
    teds_structure,
)

GRID_2X2 = "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>"


def latex(rows: list[str], spec: str = "cc") -> str:
    return "\\begin{tabular}{" + spec + "}\n" + " \\\\\n".join(rows) + " \\\\\n\\end{tabular}"


def shape(tree):
    return [[(cell.colspan, cell.rowspan) for cell in row.children] for row in tree.children]


# ------------------------------------------------------------------ LaTeX and HTML to trees
def test_latex_tree_drops_rules_and_reads_spans():
    tree = latex_table_tree(
        "\\begin{table}\\centering\\begin{tabular}{|c|c|c|}\\toprule\n"
        "\\multirow{2}{*}{Model} & \\multicolumn{2}{c}{Score} \\\\ \\cmidrule(lr){2-3}\n"
        " & dev & test \\\\ \\midrule\n"
        "A & 1 \\& 2 & {x & y} \\\\ \\hline\n"  # escaped & and a braced & are not cell breaks
        "\\end{tabular}\\end{table}"
    )
    assert shape(tree) == [[(1, 2), (2, 1)], [(1, 1), (1, 1)], [(1, 1), (1, 1), (1, 1)]]
    assert tree.size == 3 + 7  # 3 tr + 7 td


def test_latex_tree_handles_nesting_comments_and_variants():
    nested = latex_table_tree(
        "\\begin{tabularx}{\\linewidth}{lX} a & \\begin{tabular}{c} 1 \\\\ 2 \\end{tabular} \\\\ % c & d \\\\\n"
        " e & \\makecell{f\\\\g} \\tabularnewline\n h \\\\[2pt] \\end{tabularx}"
    )
    assert shape(nested) == [[(1, 1), (1, 1)], [(1, 1), (1, 1)], [(1, 1), (1, 1)]]  # the short last row is padded
    assert latex_table_tree("no table here") is None


def test_multirow_placeholder_cells_are_consumed_like_latex_does():
    block_rows = ["\\multicolumn{2}{c}{\\multirow{2}{*}{X}} & a", "\\multicolumn{2}{c}{} & b", "1 & 2 & 3"]
    two_by_two_block = latex(block_rows, "ccc")
    assert shape(latex_table_tree(two_by_two_block)) == [[(2, 2), (1, 1)], [(1, 1)], [(1, 1), (1, 1), (1, 1)]]
    overhang = latex(["\\multirow{3}{*}{X} & a", " & b"])  # spans past the last row: the row is added
    assert shape(latex_table_tree(overhang)) == [[(1, 3), (1, 1)], [(1, 1)], [(1, 1)]]


def test_html_tree_reads_th_as_td_and_strips_sections_by_default():
    html = "<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td colspan='2'><b>x</b></td></tr></tbody></table>"
    tree = html_table_tree(html)
    assert shape(tree) == [[(1, 1), (1, 1)], [(2, 1)]]
    assert tree.size == 6  # 2 tr + 3 td + the <b> inside a cell, counted as in PubTabNet's TEDS
    assert [c.tag for c in html_table_tree(html, ignore_nodes=()).children] == ["thead", "tbody"]
    assert html_table_tree("<p>no table</p>") is None
    declared = '<?xml version="1.0" encoding="utf-8"?><table><tr><td>é</td></tr></table>'
    assert shape(html_table_tree(declared)) == [[(1, 1)]]


# ------------------------------------------------------------------ TEDS-Struct by hand: 1 - dist / max(n_pred, n_ref)
def test_teds_identical_tables_and_formats():
    assert teds_structure(GRID_2X2, GRID_2X2) == 1.0
    assert teds_structure(latex(["a & b", "c & d"]), GRID_2X2) == 1.0  # LaTeX vs HTML, content ignored
    assert teds_structure(latex(["\\hline a & b", "\\hline x & y \\\\ \\hline"]), GRID_2X2) == 1.0


def test_teds_one_missing_cell_in_a_2x2():
    pred = "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>"
    # ref: 2 tr + 4 td = 6 nodes; pred 5; one deletion -> 1 - 1/6
    assert teds_structure(pred, GRID_2X2) == pytest.approx(1 - 1 / 6)


def test_teds_merged_cell_and_missing_row():
    merged = latex(["a & b", "\\multicolumn{2}{c}{cd}"])
    # pred: tr(td, td), tr(td colspan 2) = 5 nodes; rename td -> td[colspan 2] + delete td = 2 -> 1 - 2/6
    assert teds_structure(merged, GRID_2X2) == pytest.approx(1 - 2 / 6)
    three_rows = latex(["a & b", "c & d", "e & f"])
    # ref 3 tr + 6 td = 9; pred 2x2 = 6 nodes; delete a tr and its 2 td = 3 -> 1 - 3/9
    assert teds_structure(GRID_2X2, three_rows) == pytest.approx(1 - 3 / 9)


def test_teds_latex_spans_equal_html_spans():
    spans_latex = latex(["\\multirow{2}{*}{A} & b", " & d", "\\multicolumn{2}{c}{wide}"])
    spans_html = (
        "<table><tr><td rowspan='2'>A</td><td>b</td></tr><tr><td>d</td></tr><tr><td colspan='2'>wide</td></tr></table>"
    )
    assert teds_structure(spans_latex, spans_html) == 1.0
    # without the spans: ref has 3 tr + 4 td = 7 nodes; pred 2x2 plus a 1-cell row padded to 2 cells = 3 tr + 6 td = 9;
    # rename the two spanned cells (2) + delete the extra td of rows 2 and 3 (2) -> dist 4, n = 9
    assert teds_structure(latex(["A & b", " & d", "wide"]), spans_html) == pytest.approx(1 - 4 / 9)


def test_teds_section_wrappers_count_only_when_not_ignored():
    ref = "<table><tbody><tr><td>a</td><td>b</td></tr></tbody></table>"
    assert teds_structure(latex(["a & b"]), ref) == 1.0
    # ref: tbody, tr, td, td = 4 nodes; pred: tr, td, td = 3; delete tbody = 1 -> 1 - 1/4
    assert teds_structure(latex(["a & b"]), ref, ignore_nodes=()) == pytest.approx(0.75)


def test_teds_missing_tables():
    assert teds_structure("I cannot draw tables", GRID_2X2) == 0.0
    with pytest.raises(ValueError, match="the reference holds no LaTeX tabular or HTML <table>"):
        teds_structure(GRID_2X2, "no table")


# ------------------------------------------------------------------ Table2LaTeX-RL (spec item 8)
def test_table2latex_threshold_and_spec_combination():
    four_by_four = latex([" & ".join("x" * 4) for _ in range(4)], "cccc")
    one_cell_short = latex([" & ".join("x" * 4) for _ in range(3)] + ["x & x & x"], "cccc")
    assert teds_structure(one_cell_short, four_by_four) == 1.0  # LaTeX pads short rows, as the released converter
    # HTML is not padded: ref 4 tr + 16 td = 20 nodes, pred 19, one insertion -> TEDS = 1 - 1/20 = 0.95
    html_short = "<table>" + ("<tr>" + "<td></td>" * 4 + "</tr>") * 3 + "<tr>" + "<td></td>" * 3 + "</tr></table>"
    teds = teds_structure(html_short, four_by_four)
    assert teds == pytest.approx(0.95)
    visual = 0.55  # CW-SSIM below its 0.6 threshold
    assert table2latex_structure_score(teds) + (1.0 if visual > 0.6 else 0.0) == 1.0  # R = 1 + 0
    two_by_four = latex(["a & b & c & d"] * 2, "cccc")  # 2 tr + 8 td = 10 nodes: one missing cell -> 0.9
    html_two_by_four_short = "<table><tr>" + "<td></td>" * 4 + "</tr><tr>" + "<td></td>" * 3 + "</tr></table>"
    assert teds_structure(html_two_by_four_short, two_by_four) == pytest.approx(0.9)
    assert table2latex_structure_score(0.9) == 0.0  # strictly greater than 0.9


def test_batched_table_rewards():
    reward = table2latex_structure_reward(tag="answer")
    assert reward.__name__ == "table2latex_structure"
    assert pickle.loads(pickle.dumps(reward)) == reward
    ref = latex(["a & b", "c & d"])
    merged = latex(["x & y", "\\multicolumn{2}{c}{z}"])
    completions = [
        f"<answer>{latex(['x & y', 'z & w'])}</answer>",
        f"<answer>{merged}</answer>",
        latex(["x & y", "z & w"]),  # right table, but outside the tag
        "<answer>no table</answer>",
    ]
    assert reward(None, completions, answer=[ref] * 4) == [1.0, 0.0, 0.0, 0.0]
    raw = table_structure_reward(column="gt")
    assert raw(None, [*completions[:2], "x"], gt=[ref, ref, None]) == [1.0, pytest.approx(2 / 3), None]
    with pytest.raises(ValueError, match="sample 1, column 'gt': the reference holds no LaTeX tabular"):
        raw(None, ["x", "y"], gt=[ref, "plain text"])
    with pytest.raises(ValueError, match="sample 0, column 'gt': expected LaTeX or HTML text, got int"):
        raw(None, ["x"], gt=[3])
    with pytest.raises(ValueError, match="threshold must be in \\[0, 1\\]"):
        table_structure_reward(threshold=2)
