"""The NRI hyperparameter search as queue files for ``scripts/gpu_campaign.py`` (format: docs/nri.md).

Stage 1 (short horizon, many trials packed on one GPU): the trials that ``python -m experiments.nri.sweep -m
experiment=<search config>`` would run, drawn here with the Optuna sweeper's own parsing and the same seeded
random sampler, so the queue file is reproducible and identical to the sweep::

    python -m experiments.nri.search stage1 nri_search_tree results/nri/queues/stage1_tree.queue

Stage 2 (full 50,000-iteration runs, several seeds): the best stage-1 settings by validation ELBO, read from
the trials' ``metrics.json`` records (a campaign's output folder, searched recursively)::

    python -m experiments.nri.search stage2 RECORDS_DIR results/nri/queues/stage2_tree.queue \
        --relaxation spanning_tree --top 3 --seeds 0 1 2

Queue lines are ``NAME OVERRIDE ...`` (Hydra overrides for a single ``python run.py``, never ``-m``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
# Stage 2: the table rows' relaxation names and the searched keys that define a setting (the seed does not).
SETTING_KEYS = ("optim.lr", "relaxation.tau", "relaxation.eps")


def compose_search(config: str, overrides: Sequence[str] = ()) -> Any:
    """The composed config of ``experiment=<config>`` with its ``hydra`` node (the sweeper's settings)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("config", overrides=[f"experiment={config}", *overrides], return_hydra_config=True)


def draw_trials(cfg: Any, n_trials: int | None = None) -> list[dict[str, Any]]:
    """The first ``n_trials`` (default ``hydra.sweeper.n_trials``) parameter sets of the config's Optuna sweep.

    Uses the sweeper's parser (``create_params_from_overrides``) on ``hydra.sweeper.params`` and asks a study with
    ``optuna.samplers.RandomSampler(seed=hydra.sweeper.sampler.seed)`` in the sweeper's order, so the values are
    those that ``-m`` would launch. Returns one ``{key: value}`` per trial (fixed params included).
    """
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    sweeper = cfg.hydra.sweeper
    target = str(sweeper.sampler.get("_target_", ""))
    if not target.endswith("RandomSampler"):
        raise ValueError(f"hydra.sweeper.sampler must be the random sampler to generate a queue, got {target!r}")
    seed = sweeper.sampler.get("seed")
    if seed is None:
        raise ValueError("hydra.sweeper.sampler.seed must be set so that the queue file is reproducible")
    n = int(sweeper.n_trials if n_trials is None else n_trials)
    if n < 1:
        raise ValueError(f"n_trials must be >= 1, got {n}")
    dists, fixed = create_params_from_overrides([f"{k}={v}" for k, v in sweeper.params.items()])
    for key in fixed:
        dists.pop(key, None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=int(seed)), direction="maximize")
    trials = []
    for _ in range(n):
        trial = study.ask()
        for key, dist in dists.items():
            trial._suggest(key, dist)  # what the sweeper calls (OptunaSweeperImpl._configure_trials)
        trials.append({**trial.params, **fixed})
    return trials


def _fmt(value: Any) -> str:
    return f"{value}"


def queue_lines(names: Iterable[str], overrides: Iterable[Sequence[str]]) -> list[str]:
    """``NAME OVERRIDE ...`` lines; names must match ``[A-Za-z0-9_.-]+`` and be unique."""
    lines, seen = [], set()
    for name, ov in zip(names, overrides):
        if not NAME_RE.match(name) or name in seen:
            raise ValueError(f"queue names must match [A-Za-z0-9_.-]+ and be unique, got {name!r}")
        if any(not o or " " in o for o in ov):
            raise ValueError(f"queue overrides must be non-empty and without spaces, got {list(ov)}")
        seen.add(name)
        lines.append(" ".join([name, *ov]))
    return lines


def stage1_queue(config: str, prefix: str | None = None, n_trials: int | None = None,
                 overrides: Sequence[str] = ()) -> str:
    """The stage-1 queue text of search config ``config`` (e.g. ``nri_search_tree``): one line per trial,
    ``<prefix>_t<NN> experiment=<config> <extra overrides> <trial params>``."""
    cfg = compose_search(config, overrides)
    trials = draw_trials(cfg, n_trials)
    prefix = prefix or config.replace("nri_search_", "s1_")
    width = max(2, len(str(len(trials) - 1)))
    names = [f"{prefix}_t{i:0{width}d}" for i in range(len(trials))]
    ovs = [[f"experiment={config}", *overrides, *(f"{k}={_fmt(v)}" for k, v in t.items())] for t in trials]
    sw = cfg.hydra.sweeper
    head = [f"# Stage 1 of the NRI search: experiment={config}, {len(trials)} trials of the Optuna random sampler "
            f"(seed {sw.sampler.seed}),",
            f"# {cfg.trainer.max_steps} iterations each, validation every {cfg.trainer.eval_every}; ranges: "
            + ", ".join(f"{k} {v}" for k, v in sw.params.items()) + ".",
            f"# Generated by: python -m experiments.nri.search stage1 {config} OUT"
            + (f" --trials {n_trials}" if n_trials is not None else "")
            + "".join(f" --override {o}" for o in overrides) + " (same trials as `python -m experiments.nri.sweep -m "
            f"experiment={config}`)."]
    return "\n".join([*head, *queue_lines(names, ovs)]) + "\n"


# --------------------------------------------------------------------------------------------------- stage 2
def dotted(config: Mapping, key: str) -> Any:
    """``config[a][b]`` for ``key = "a.b"`` (None where a part is missing)."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def read_records(root: Path) -> list[dict]:
    """Every ``metrics.json`` under ``root`` (recursively), with its folder name as ``_name``."""
    out = []
    for path in sorted(Path(root).rglob("metrics.json")):
        rec = json.loads(path.read_text())
        rec["_name"] = path.parent.name
        out.append(rec)
    return out


def rank_settings(records: Iterable[dict], relaxation: str, objective: str = "best/valid/elbo") -> list[dict]:
    """Finished stage-1 records of ``relaxation``, grouped by setting (lr, tau, eps), best first by ``objective``
    (the best trial of each setting; a record with ``"finished": false`` or without the objective is skipped).

    Returns ``[{"setting": {key: value}, "value": v, "trial": name}, ...]``.
    """
    best: dict[tuple, dict] = {}
    for rec in records:
        if rec.get("relaxation") != relaxation or rec.get("finished", True) is False:
            continue
        value = (rec.get("metrics") or {}).get(objective)
        if value is None or not math.isfinite(float(value)):
            continue
        setting = {k: dotted(rec.get("config") or {}, k) for k in SETTING_KEYS}
        setting = {k: v for k, v in setting.items() if v is not None}
        if relaxation != "ef_topk_fd":
            setting.pop("relaxation.eps", None)
        key = tuple(sorted(setting.items()))
        if key not in best or float(value) > best[key]["value"]:
            best[key] = {"setting": setting, "value": float(value), "trial": rec["_name"]}
    return sorted(best.values(), key=lambda r: -r["value"])


def stage2_queue(ranked: Sequence[dict], relaxation: str, prefix: str, top: int = 3,
                 seeds: Sequence[int] = (0, 1, 2), overrides: Sequence[str] = ()) -> str:
    """Full runs (the experiment's 50,000 iterations) of the ``top`` best settings, each on every seed."""
    if top < 1 or not seeds:
        raise ValueError(f"top must be >= 1 and seeds non-empty, got top={top}, seeds={list(seeds)}")
    if not ranked:
        raise ValueError(f"no finished stage-1 record of relaxation={relaxation} to choose from")
    head = [f"# Stage 2 of the NRI search: relaxation={relaxation}, the {min(top, len(ranked))} best stage-1 "
            f"settings by best/valid/elbo, seeds {' '.join(map(str, seeds))}, full length (experiment=nri)."]
    names, ovs = [], []
    for c, r in enumerate(ranked[:top]):
        head.append(f"# c{c}: " + " ".join(f"{k}={v}" for k, v in r["setting"].items())
                    + f" (stage-1 trial {r['trial']}: best/valid/elbo {r['value']:.1f})")
        for s in seeds:
            names.append(f"{prefix}_c{c}_s{s}")
            ovs.append(["experiment=nri", f"relaxation={relaxation}", *overrides,
                        *(f"{k}={_fmt(v)}" for k, v in r["setting"].items()), f"seed={s}"])
    return "\n".join([*head, *queue_lines(names, ovs)]) + "\n"


# ------------------------------------------------------------------------------------------------ study summary
SUMMARY_METRICS = ("test/elbo", "test/edge_precision", "test/edge_recall", "test/edge_precision_released",
                   "test/edge_released_complement", "test/elbo_kl_undirected", "best/valid/elbo", "best/step")


def _history_valid(run: Path) -> list[dict]:
    """Validation points of a run's history.jsonl: step, ELBO and both precisions."""
    path = run / "history.jsonl"
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "valid/elbo" in row:
                out.append({"step": row["step"], "elbo": round(row["valid/elbo"], 1),
                            "precision": round(row["valid/edge_precision"], 3),
                            "precision_released": round(row.get("valid/edge_precision_released", float("nan")), 3)})
    return out


def summarise(root: Path, study: str, note: str = "") -> dict:
    """A compact record of a study (every run's ``metrics.json`` under ``root``): per run its command, commit,
    wall time, settings, the summary metrics and its validation curve; no machine paths."""
    runs = []
    hardware = None
    for path in sorted(Path(root).rglob("metrics.json")):
        rec = json.loads(path.read_text())
        cfg = rec.get("config") or {}
        hw = dict(rec.get("hardware") or {})
        hardware = hardware or {k: hw.get(k) for k in ("cpu", "cpu_cores", "torch_threads", "torch", "device")}
        m = rec.get("metrics") or {}
        runs.append({"name": path.parent.name, "command": rec.get("command"), "commit": rec.get("commit"),
                     "wall_time_s": rec.get("wall_time_s"), "relaxation": rec.get("relaxation"),
                     "lr": dotted(cfg, "optim.lr"), "tau": dotted(cfg, "relaxation.tau"),
                     "eps": dotted(cfg, "relaxation.eps"), "seed": rec.get("seed"),
                     "steps": dotted(cfg, "trainer.max_steps"),
                     "metrics": {k: (round(m[k], 4) if isinstance(m[k], float) else m[k]) for k in SUMMARY_METRICS
                                 if k in m},
                     "valid": _history_valid(path.parent)})
    return {"study": study, "note": note, "hardware": hardware, "runs": runs}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="stage", required=True)
    s1 = sub.add_parser("stage1", help="queue of a search config's trials")
    s1.add_argument("config", help="search config in configs/experiment, e.g. nri_search_tree")
    s1.add_argument("out", type=Path)
    s1.add_argument("--trials", type=int, default=None, help="default: the config's hydra.sweeper.n_trials")
    s1.add_argument("--prefix", default=None)
    s1.add_argument("--override", action="append", default=[], help="extra Hydra override for every trial")
    s2 = sub.add_parser("stage2", help="queue of full runs of the best stage-1 settings")
    s2.add_argument("records", type=Path, help="folder with the stage-1 trials' metrics.json (recursive)")
    s2.add_argument("out", type=Path)
    s2.add_argument("--relaxation", required=True, help="spanning_tree, ef_topk_fd, indep, ...")
    s2.add_argument("--prefix", default=None)
    s2.add_argument("--top", type=int, default=3)
    s2.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s2.add_argument("--override", action="append", default=[])
    sm = sub.add_parser("summary", help="compact JSON record of a study's runs (results/nri/proxy/)")
    sm.add_argument("records", type=Path)
    sm.add_argument("out", type=Path)
    sm.add_argument("--study", required=True)
    sm.add_argument("--note", default="")
    a = p.parse_args(argv)
    if a.stage == "summary":
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(summarise(a.records, a.study, a.note), indent=1) + "\n")
        print(f"wrote {a.out}")
        return
    if a.stage == "stage1":
        text = stage1_queue(a.config, a.prefix, a.trials, a.override)
    else:
        ranked = rank_settings(read_records(a.records), a.relaxation)
        text = stage2_queue(ranked, a.relaxation, a.prefix or f"s2_{a.relaxation}", a.top, a.seeds, a.override)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(f"wrote {a.out} ({sum(1 for ln in text.splitlines() if ln and not ln.startswith('#'))} runs)")


if __name__ == "__main__":
    main()
