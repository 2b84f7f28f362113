"""Bias and variance of every gradient estimator on toy problems with exact gradients by enumeration.

Problems (f to minimise, exact gradient of E[f(X)] by enumerating the support, see sst.diagnostics):

* Categorical n=10: theta ~ N(0, 1), f(x) = ||x - t||^2, t ~ U(0, 1)^10.
* Binary n=20 (Tucker et al.'s toy): theta = 0, f(x) = sum_i (x_i - 0.45)^2 (2^20 points enumerated).
* TopK n=10, k=3: theta ~ N(0, 1), f(x) = ||x - t||^2, t ~ U(0, 1)^10 (law of Gumbel top-k =
  sampling without replacement).

Every estimator gets ``--draws`` single-item gradient estimates (vectorised, ``--batch`` per call) at
each temperature; nvil, rebar and relax first tune their own parameters for ``--tune-steps`` Adam steps
on the same problem, as a training loop would. Reported per estimator and temperature: relative bias
||E g - grad|| / ||grad||, relative variance tr Cov(g) / ||grad||^2, cosine(E g, grad), and the largest
|z| = |E g - grad| / se over coordinates (about 2-4 for an unbiased estimator).

Writes results/estimators/report.json, report.md and one PNG per problem; prints the Markdown table.

    python benchmarks/estimator_report.py            # default: about 1-3 minutes on 1 CPU thread
    python benchmarks/estimator_report.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

import sst
import sst.estimators as E
from sst import diagnostics as D

ROOT = Path(__file__).resolve().parents[1]

# label -> (estimator name, options, uses tau, tuned)
ESTIMATORS = [
    ("relaxed", "relaxed", {}, True, False),
    ("straight_through", "straight_through", {}, True, False),
    ("reinforce", "reinforce", {"baseline": "none"}, False, False),
    ("reinforce+ema", "reinforce", {"baseline": "ema"}, False, False),
    ("reinforce+batch", "reinforce", {"baseline": "batch"}, False, False),
    ("reinforce+loo (S=2)", "reinforce", {"baseline": "loo", "num_samples": 2}, False, False),
    ("nvil", "nvil", {}, False, True),
    ("muprop", "muprop", {}, False, False),
    ("muprop+batch", "muprop", {"baseline": "batch"}, False, False),
    ("rebar", "rebar", {}, True, True),
    ("relax", "relax", {}, True, True),
]
Z_SIGNIFICANT = 4.5
F_EVALS = {"reinforce+loo (S=2)": 2, "muprop": 2, "muprop+batch": 2, "rebar": 3, "relax": 3}


def problems(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    cat_theta, cat_t = torch.randn(10, generator=g), torch.rand(10, generator=g)
    topk_theta, topk_t = torch.randn(10, generator=g), torch.rand(10, generator=g)

    def quad(t):
        return lambda x: ((x - t) ** 2).sum(-1)

    return {
        "Categorical n=10": (sst.Categorical(), cat_theta, quad(cat_t)),
        "Binary n=20": (sst.Binary(), torch.zeros(20), quad(torch.full((20,), 0.45))),
        "TopK n=10 k=3": (sst.TopK(3), topk_theta, quad(topk_t)),
    }


def run(args) -> dict:
    records = []
    exacts = {}
    for pname, (s, theta, f) in problems(args.seed).items():
        t0 = time.perf_counter()
        value, exact = D.exact_gradient(s, theta.double(), lambda x, f=f: f(x.float()).double())
        exact = exact.float()
        exacts[pname] = {"value": float(value), "grad_norm": float(exact.norm()),
                         "enumeration_s": round(time.perf_counter() - t0, 3)}
        print(f"{pname}: E f = {float(value):.4f}, |grad| = {float(exact.norm()):.4g}", flush=True)
        for label, name, opts, uses_tau, tuned in ESTIMATORS:
            if not E.supports(name, s):
                continue
            taus = args.taus if (uses_tau or (name == "muprop" and not E.structure_info(s).exact_log_prob)) \
                else [None]
            for tau in taus:
                torch.manual_seed(args.seed)
                est = E.build(name, event_shape=tuple(theta.shape), **({"tau": tau} if tau else {}), **opts)
                t1 = time.perf_counter()
                if tuned and args.tune_steps > 0:
                    D.tune(est, s, theta, f, steps=args.tune_steps, batch_size=100, lr=args.tune_lr)
                r = D.bias_variance(est, s, theta, f, num_draws=args.draws, batch_size=args.batch, exact=exact)
                rec = {
                    "problem": pname, "estimator": label, "name": name, "options": opts, "tau": tau,
                    "tuned_steps": args.tune_steps if tuned else 0, "f_evals_per_item": F_EVALS.get(label, 1),
                    **{k: r[k] for k in ("num_draws", "rel_bias", "rel_variance", "variance", "bias_norm", "mse",
                                         "cosine", "max_abs_z", "sign_agreement")},
                    "seconds": round(time.perf_counter() - t1, 3),
                }
                if name in ("rebar", "relax"):
                    rec["learned_tau"] = float(est.temperature().detach())
                    rec["learned_eta"] = float(est.eta.detach())
                records.append(rec)
                print(f"  {label:22s} tau={tau!s:5s} rel.bias {rec['rel_bias']:8.4f}  "
                      f"rel.var {rec['rel_variance']:10.3f}  cos {rec['cosine']:6.3f}  "
                      f"max|z| {rec['max_abs_z']:6.2f}  ({rec['seconds']:.1f}s)", flush=True)
    return {"exact": exacts, "records": records}


def fmt(x: float) -> str:
    if x == 0 or not math.isfinite(x):
        return str(x)
    if x >= 100:
        return f"{x:.0f}"
    if x >= 0.01:
        return f"{x:.3f}".rstrip("0").rstrip(".") if x < 10 else f"{x:.1f}"
    return f"{x:.1e}"


def bias_cell(r: dict) -> str:
    """The relative bias; in parentheses when it is within the Monte Carlo noise (max |z| < 4.5)."""
    return fmt(r["rel_bias"]) if r["max_abs_z"] >= Z_SIGNIFICANT else f"({fmt(r['rel_bias'])})"


def markdown(result: dict, taus: list[float]) -> str:
    lines = [f"Cells: relative bias / relative variance of one item's gradient estimate. A bias in parentheses "
             f"is not distinguishable from zero with {result['records'][0]['num_draws']} draws "
             f"(max |z| < {Z_SIGNIFICANT}); its size is then Monte Carlo noise, about sqrt(rel. variance / draws).",
             ""]
    for pname, ex in result["exact"].items():
        recs = [r for r in result["records"] if r["problem"] == pname]
        lines.append(f"**{pname}** (|grad E f| = {ex['grad_norm']:.3g})\n")
        header = "| estimator | f evals | tau-free | " + " | ".join(f"tau={t:g}" for t in taus) + " |"
        lines += [header, "|" + "---|" * (3 + len(taus))]
        for label, *_ in ESTIMATORS:
            rows = [r for r in recs if r["estimator"] == label]
            if not rows:
                continue
            cells = {r["tau"]: f"{bias_cell(r)} / {fmt(r['rel_variance'])}" for r in rows}
            free = cells.get(None, "")
            lines.append(f"| {label} | {rows[0]['f_evals_per_item']} | {free} | "
                         + " | ".join(cells.get(t, "") for t in taus) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(result: dict, taus: list[float], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for pname in result["exact"]:
        recs = [r for r in result["records"] if r["problem"] == pname]
        fig, axes = plt.subplots(1, 2, figsize=(13, 4))
        for i, (label, *_rest) in enumerate(ESTIMATORS):
            rows = [r for r in recs if r["estimator"] == label]
            if not rows:
                continue
            color = f"C{i}"
            for ax, key in zip(axes, ("rel_bias", "rel_variance")):
                noisy = key == "rel_bias"  # hollow markers / dotted lines: bias within Monte Carlo noise
                if rows[0]["tau"] is None:
                    sig = not noisy or rows[0]["max_abs_z"] >= Z_SIGNIFICANT
                    ax.axhline(max(rows[0][key], 1e-4), color=color, ls="--" if sig else ":", label=label)
                else:
                    rows = sorted(rows, key=lambda r: r["tau"])
                    ax.plot([r["tau"] for r in rows], [max(r[key], 1e-4) for r in rows], "-", color=color,
                            label=label)
                    for r in rows:
                        sig = not noisy or r["max_abs_z"] >= Z_SIGNIFICANT
                        ax.plot([r["tau"]], [max(r[key], 1e-4)], "o", color=color,
                                markerfacecolor=color if sig else "none")
        titles = ("relative bias |E g - grad| / |grad| (hollow, dotted: within MC noise)",
                  "relative variance tr Cov(g) / |grad|^2")
        for ax, title in zip(axes, titles):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("temperature tau (initial tau for rebar/relax)")
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3, which="both")
        axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
        fig.suptitle(f"{pname}: gradient estimators of E[f(X)] (dashed: no temperature)")
        fig.tight_layout()
        name = "bias_variance_" + pname.split()[0].lower() + ".png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files.append(name)
    return files


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--draws", type=int, default=50000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--taus", type=float, nargs="+", default=[0.1, 0.3, 1.0, 3.0])
    p.add_argument("--tune-steps", type=int, default=500)
    p.add_argument("--tune-lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "estimators")
    p.add_argument("--quick", action="store_true", help="2000 draws, 2 temperatures, 30 tuning steps")
    args = p.parse_args(argv)
    if args.quick:
        args.draws, args.batch, args.taus, args.tune_steps = 2000, 500, [0.3, 1.0], 30
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = run(args)
    wall = time.perf_counter() - t0
    table = markdown(result, args.taus)
    result["settings"] = {"draws": args.draws, "batch": args.batch, "taus": args.taus, "tune_steps": args.tune_steps,
                          "tune_lr": args.tune_lr, "seed": args.seed, "threads": args.threads,
                          "command": " ".join(["python", "benchmarks/estimator_report.py", *(argv or sys.argv[1:])])}
    result["hardware"] = {"platform": platform.platform(), "processor": platform.processor(),
                          "torch": torch.__version__}
    result["wall_time_s"] = round(wall, 1)
    result["plots"] = plot(result, args.taus, args.out)
    (args.out / "report.json").write_text(json.dumps(result, indent=1))
    (args.out / "report.md").write_text(table + f"\n{args.draws} draws per cell; wall time {wall:.0f} s.\n")
    print()
    print(table)
    print(f"wrote {args.out}/report.json, report.md, {', '.join(result['plots'])} in {wall:.0f} s")


if __name__ == "__main__":
    main()
