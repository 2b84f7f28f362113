"""Every table of the reports, and the goals table: the issues' goals (the paper's numbers) against our cells."""

from __future__ import annotations

import math
import statistics

from experiments.report import l2x, nri, nri_cpu, vae
from experiments.report.cells import MISSING, cell, ordinal, values
from experiments.report.protocol import admit

Table = tuple[list[str], list[list[str]]]
# Every table's protocol: a table record enters the tables (their cells, the goals, the seed-by-seed and paired
# tables) only when it follows one of its experiment's protocols.
PROTOCOLS = (*nri.NRI_PROTOCOLS.values(), *l2x.L2X_PROTOCOLS.values(), *vae.VAE_PROTOCOLS)

# The goals the issues set, from the paper's numbers (docs/protocols.md), checked against the mean over a cell's
# records:
# (goal, experiment, cell key as the tables group it, metric, scale, digits, target, higher is better).
GOALS = [
    ("NRI, T = 10, spanning tree: test ELBO", "nri", ("spanning_tree", 10, "relaxed"), "test/elbo", 1.0, 0,
     -1080.0, True),
    ("NRI, T = 10, spanning tree: edge precision %", "nri", ("spanning_tree", 10, "relaxed"),
     "test/edge_precision_released", 100.0, 1, 91.0, True),
    ("NRI, T = 10, indep. edges: test ELBO", "nri", ("indep", 10, "relaxed"), "test/elbo", 1.0, 0, -1370.0, True),
    ("NRI, T = 10, E.F. Ent. Top |V|-1: test ELBO", "nri", ("ef_topk_fd", 10, "relaxed"), "test/elbo", 1.0, 0, -2100.0,
     True),
    ("L2X, aroma, k = 10, Corr. Top k: subset precision %", "l2x", ("corr_topk", 10, 1), "test/subset_precision",
     100.0, 1, 53.1, True),
    ("L2X, aroma, k = 10, Corr. Top k: MSE ×100 (held-out aspect-file reviews)", "l2x", ("corr_topk", 10, 1),
     "test/mse_heldout_aspect_file", 100.0, 2, 2.5, False),
    ("VAE, categorical, Gumbel-softmax: test -ELBO", "vae", ("relaxed", "gumbel_softmax"), "test/neg_elbo", 1.0, 1,
     101.5, False),
    ("VAE, categorical, ST Gumbel-softmax: test -ELBO", "vae", ("straight_through", "gumbel_softmax"),
     "test/neg_elbo", 1.0, 1, 107.8, False),
    ("VAE, categorical, REINFORCE: test -ELBO", "vae", ("reinforce", "gumbel_softmax"), "test/neg_elbo", 1.0, 1,
     110.6, False),
    ("VAE, categorical, MuProp: test -ELBO", "vae", ("muprop", "gumbel_softmax"), "test/neg_elbo", 1.0, 1, 107.0,
     False),
    ("VAE, Bernoulli, binary Concrete: test -ELBO", "vae", ("relaxed", "binary_concrete"), "test/neg_elbo", 1.0, 1,
     105.0, False),
    ("VAE, Bernoulli, ST binary Concrete: test -ELBO", "vae", ("straight_through", "binary_concrete"),
     "test/neg_elbo", 1.0, 1, 111.5, False),
    ("VAE, Bernoulli, REINFORCE: test -ELBO", "vae", ("reinforce", "binary_concrete"), "test/neg_elbo", 1.0, 1,
     112.2, False),
    ("VAE, Bernoulli, MuProp: test -ELBO", "vae", ("muprop", "binary_concrete"), "test/neg_elbo", 1.0, 1, 109.7,
     False),
]


def l2x_order_row(records: list[dict], aspect: int = 1) -> list[str]:
    """Corr. Top k's place among the seven rows by mean subset precision at each k, and its margin over the best
    other row (negative: behind it)."""
    labels = dict(l2x.L2X_ROWS)
    places, first_everywhere, complete = [], True, True
    for k in l2x.L2X_KS:
        ranked = l2x.l2x_ranking(records, k, aspect)
        if "corr_topk" not in ranked or len(ranked) < 2:
            complete = False
            continue
        place = list(ranked).index("corr_topk") + 1
        best_other = next(r for r in ranked if r != "corr_topk")
        margin = 100 * (ranked["corr_topk"] - ranked[best_other])
        first_everywhere &= place == 1
        places.append(f"k = {k}: {ordinal(place)} of {len(ranked)}, {margin:+.1f} to {labels[best_other]}")
    if not places:
        status = "no run"
    elif first_everywhere and complete:
        status = "met"
    else:
        status = "not met" if not first_everywhere else "incomplete"
    return ["L2X, aroma: Corr. Top k first in subset precision at every k", "first, by 16 to 34 points",
            "; ".join(places) or MISSING, status]


def goals_table(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Each goal of :data:`GOALS`: the paper's target, our cell (mean ± sd over seeds) and whether its mean meets it."""
    groups = {"nri": nri.nri_groups(records), "l2x": l2x.l2x_groups(records), "vae": vae.vae_groups(records)}
    header = ["goal", "paper", "ours", "status"]
    rows = []
    for label, exp, key, metric, scale, digits, target, higher in GOALS:
        vals = [v * scale for v in values(groups[exp].get(key, []), metric) if math.isfinite(v)]
        paper = f"{'≥' if higher else '≤'} {target:.{digits}f}"
        if not vals:
            rows.append([label, paper, MISSING, "no run"])
            continue
        mean = statistics.fmean(vals)
        gap = (target - mean) if higher else (mean - target)
        status = "met" if gap <= 0 else f"not met, by {gap:.{digits}f}"
        rows.append([label, paper, cell(vals, digits=digits), status])
    if exp_rows := [r for r in rows if r[0].startswith("L2X")]:
        rows.insert(rows.index(exp_rows[-1]) + 1, l2x_order_row(records))
    return header, rows


def left_out(records: list[dict], side_records: list[dict] = ()) -> list[str]:
    """A line for each table record that no cell takes, with the reason: off every protocol of its experiment
    (:data:`PROTOCOLS`: the settings it differs in, against the closest protocol), or following one but differing
    from its cell's other runs in a setting (:func:`cells.alike`: a sweep read with ``make_tables --runs``, say);
    and for each record of the NRI CPU-scale campaign (a side record) off its protocol."""
    admitted, off = admit(records, PROTOCOLS)
    unlike = [*l2x.l2x_cells(admitted)[1], *l2x.l2x_cells(admitted, l2x.L2X_PREVIOUS_W2V_EPOCHS)[1],
              *vae.vae_cells(admitted)[1]]
    return [*off, *(f"{line}: unlike the other runs of its cell" for line in unlike),
            *nri_cpu.admit_cpu(side_records)[1]]


def blocks(side_records: list[dict] = ()) -> dict[str, str]:
    """Tables that a Markdown file shows with their caption and notes (between the same markers): name -> text."""
    return {"nri_cpu": nri_cpu.render(nri_cpu.admit_cpu(side_records)[0])}


def all_tables(records: list[dict], side_records: list[dict] = ()) -> dict[str, tuple[str, Table]]:
    """Every table: name -> (caption, (header, rows)); ``side_records`` (``"table": false``) feed only the
    tables of side runs paired with table runs (temperature, training steps, pairwise head) and the learning
    curves. Only the records that follow a protocol of :data:`PROTOCOLS` reach any table."""
    side = list(side_records)
    records = admit(records, PROTOCOLS)[0]
    return {
        "nri": (("NRI graph layout, T = 10: test ELBO (released form) and edge precision/recall of hard samples "
                 "(released complement-aware metric; last column: the sample itself)"),
                nri.nri_table(records, 10)),
        "nri20": ("NRI graph layout, T = 20", nri.nri_table(records, 20)),
        "l2x": ("L2X on BeerAdvocate, aroma: test MSE ×100 / subset precision %", l2x.l2x_table(records)),
        "l2x_seeds": ("L2X on BeerAdvocate, aroma: subset precision % seed by seed", l2x.l2x_seeds_table(records)),
        "l2x_best_epoch": ("L2X, aroma: the epoch of the best checkpoint of the table's runs",
                           l2x.l2x_best_epoch_table(records)),
        "l2x_w2v5": (f"L2X, aroma, on the previous default embeddings (word2vec {l2x.L2X_PREVIOUS_W2V_EPOCHS} "
                     "epochs)", l2x.l2x_table(records, w2v_epochs=l2x.L2X_PREVIOUS_W2V_EPOCHS)),
        "l2x_tau": ("L2X, aroma: temperature probes against the table's runs of the same seeds",
                    l2x.l2x_tau_table(records, side)),
        "l2x_steps": ("L2X, aroma: longer training against the table's runs of the same seeds",
                      l2x.l2x_steps_table(records, side)),
        "l2x_pairwise": ("L2X, aroma: Corr. Top k with another pairwise head against the table's runs of the same "
                         "seeds", l2x.l2x_pairwise_table(records, side)),
        "l2x_learning_curve": ("L2X, aroma, k = 10: runs that differ only in the training-set size",
                               l2x.learning_curve_table(l2x.summarise(l2x.curves([*records, *side])))),
        "vae": ("Discrete VAE on MNIST: test negative ELBO (nats)", vae.vae_table(records)),
        "goals": ("The issues' goals (the paper's numbers) against the mean of our cells", goals_table(records)),
    }
