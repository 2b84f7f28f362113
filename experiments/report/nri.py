"""The NRI table (graph layout): test ELBO and edge precision/recall against the paper's."""

from __future__ import annotations

from experiments.report.cells import MISSING, cell, group, values

# Paper numbers (docs/protocols.md). T=10: (ELBO, precision %, recall %).
PAPER_NRI = {
    ("indep", 10): ("-1370 ± 20", "48 ± 2", "93 ± 3"),
    ("ef_topk", 10): ("-2100 ± 20", "41 ± 1", "41 ± 1"),
    ("spanning_tree", 10): ("-1080 ± 110", "91 ± 3", "91 ± 3"),
}
NRI_ROWS = [("indep", "Indep. edges"), ("ef_topk", "E.F. Ent. Top |V|-1"), ("spanning_tree", "Spanning tree")]


def nri_groups(records: list[dict]) -> dict:
    """{(relaxation, timesteps, estimator): [metrics, ...]} of the NRI runs."""
    return group(records, "nri", lambda r: (r["relaxation"], int(r.get("timesteps") or 10), r.get("estimator")))


def nri_table(records: list[dict], timesteps: int = 10) -> tuple[list[str], list[list[str]]]:
    """(header, rows): per edge distribution, our test ELBO, edge precision and recall % beside the paper's."""
    groups = nri_groups(records)
    header = ["edge distribution", "ELBO (ours)", "ELBO (paper)", "precision % (ours)", "precision % (paper)",
              "recall % (ours)", "recall % (paper)"]
    rows = []
    for rel, label in NRI_ROWS:
        ms = groups.get((rel, timesteps, "relaxed"), [])
        paper = PAPER_NRI.get((rel, timesteps), (MISSING,) * 3)
        rows.append([label, cell(values(ms, "test/elbo"), digits=0), paper[0],
                     cell(values(ms, "test/edge_precision"), 100), paper[1],
                     cell(values(ms, "test/edge_recall"), 100), paper[2]])
    return header, rows
