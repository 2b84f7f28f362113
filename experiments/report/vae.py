"""The discrete-VAE table (test negative ELBO on MNIST) and the runs' training curves."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.report.cells import MISSING, alike, cell, group, values
from experiments.report.protocol import Protocol, matching

# Jang et al. (2017), test -ELBO: (categorical, Bernoulli). Our straight_through is ST Gumbel-softmax.
PAPER_VAE = {
    "reinforce": ("110.6", "112.2"),
    "muprop": ("107.0", "109.7"),
    "relaxed": ("101.5", "105.0"),
    "straight_through": ("107.8", "111.5"),
}
VAE_ROWS = [("relaxed", "Gumbel-softmax (SST)"), ("straight_through", "ST Gumbel-softmax"),
            ("reinforce", "REINFORCE (score function)"), ("nvil", "NVIL"), ("muprop", "MuProp"),
            ("rebar", "REBAR"), ("relax", "RELAX")]
VAE_LATENTS = [("gumbel_softmax", "categorical 20×10"), ("binary_concrete", "Bernoulli 200")]
# The paper's protocol (Jang et al. 2017, docs/protocols.md): the 784-512-256 encoder (and its mirror) with the latent
# of the relaxation (20 categorical variables of 10 classes, or 200 Bernoulli), dynamically binarised MNIST, 50k
# training images (10k held out for validation), batch 100, 100,000 steps, the whole test set.
VAE_PROTOCOL = Protocol("VAE", "vae", {
    "model.hidden": [512, 256], "model.num_vars": None, "model.num_classes": 10, "data.num_valid": 10_000,
    "data.binarize": "dynamic", "data.batch_size": 100, "trainer.max_steps": 100_000, "data.limit_eval": None})
VAE_PROTOCOLS = (VAE_PROTOCOL,)


def vae_settings(record: dict) -> dict[str, object] | None:
    """The training settings that the seeds of one VAE cell must share, with the defaults of the time for a record
    that predates a setting (no KL warm-up, PyTorch's initialisation, a constant learning rate); None for a record
    without its config (a W&B run's), which is not checked."""
    cfg = record.get("config")
    if not isinstance(cfg, dict):
        return None
    optim = cfg.get("optim") or {}
    schedule = optim.get("schedule") or "constant"
    return {"latent": record.get("latent"), "binarize": record.get("binarize", "dynamic"),
            "anneal": record.get("anneal"), "anneal.kl_warmup": record.get("kl_warmup", 0),
            "model.init": record.get("init", "torch"), "optim.lr": optim.get("lr"), "optim.schedule": schedule,
            "optim.lr_min": optim.get("lr_min") if schedule == "cosine" else None,
            "trainer.max_steps": (cfg.get("trainer") or {}).get("max_steps"),
            "data.batch_size": (cfg.get("data") or {}).get("batch_size")}


def vae_cells(records: list[dict]) -> tuple[dict, list[str]]:
    """({(estimator, relaxation): [metrics, ...]}, left out): the VAE runs of :data:`VAE_PROTOCOL` by cell, each
    cell holding the runs alike in every setting of :func:`vae_settings` (:func:`cells.alike`), and a line for each
    run of the protocol left out."""
    groups, left_out = {}, []
    runs_of = group(matching(records, VAE_PROTOCOL), "vae", lambda r: (r["estimator"], r["relaxation"]), lambda r: r)
    for (est, rel), runs in runs_of.items():
        kept, left = alike(runs, vae_settings)
        groups[(est, rel)] = [r["metrics"] for r in kept]
        left_out += [f"VAE {rel}/{est}: {line}" for line in left]
    return groups, left_out


def vae_groups(records: list[dict]) -> dict:
    """{(estimator, relaxation): [metrics, ...]} of the VAE runs (:func:`vae_cells`)."""
    return vae_cells(records)[0]


def vae_table(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): per estimator, our test -ELBO beside the paper's for both latents."""
    groups = vae_groups(records)
    header = ["estimator"]
    for _, label in VAE_LATENTS:
        header += [f"{label} (ours)", f"{label} (paper)"]
    rows = []
    for est, label in VAE_ROWS:
        row = [label]
        for i, (rel, _) in enumerate(VAE_LATENTS):
            ms = groups.get((est, rel), [])
            row += [cell(values(ms, "test/neg_elbo")), PAPER_VAE.get(est, (MISSING, MISSING))[i]]
        rows.append(row)
    return header, rows


def read_curve(path: Path) -> dict[str, list]:
    """Training curve from a run's history.jsonl: per validation step, the valid neg ELBO and the mean
    train neg ELBO logged since the previous validation (entries repeated by a resume keep the last)."""
    rows: dict[int, dict[str, float]] = {}
    if not Path(path).is_file():
        return {"step": [], "train/neg_elbo": [], "valid/neg_elbo": []}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            rows.setdefault(int(rec.pop("step")), {}).update(rec)
    curve: dict[str, list] = {"step": [], "train/neg_elbo": [], "valid/neg_elbo": []}
    acc: list[float] = []
    for step in sorted(rows):
        rec = rows[step]
        if "train/neg_elbo" in rec:
            acc.append(rec["train/neg_elbo"])
        if "valid/neg_elbo" in rec:
            curve["step"].append(step)
            curve["valid/neg_elbo"].append(round(rec["valid/neg_elbo"], 4))
            curve["train/neg_elbo"].append(round(sum(acc) / len(acc), 4) if acc else None)
            acc = []
    return curve


def load_run(path: Path) -> dict:
    """{"label", "relaxation", "estimator", "curve"} of a run, from a run folder (history.jsonl, metrics.json) or a
    metrics.json record.

    Raises:
        ValueError: neither holds a training curve.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    record_path = path if path.is_file() else folder / "metrics.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    curve = record.get("curve")
    if (folder / "history.jsonl").is_file():
        curve = read_curve(folder / "history.jsonl")
    if not curve or not curve.get("step"):
        raise ValueError(f"{path}: no training curve (expected history.jsonl or a metrics.json with 'curve')")
    relaxation, estimator = str(record.get("relaxation", "?")), str(record.get("estimator", "?"))
    if not record:  # still running: take the names from the hydra config saved in the folder
        hydra_cfg = folder / ".hydra" / "config.yaml"
        if hydra_cfg.is_file():
            from omegaconf import OmegaConf

            c = OmegaConf.load(hydra_cfg)
            relaxation, estimator = str(c.relaxation.name), str(c.estimator.name)
    label = f"{relaxation} / {estimator}"
    test = record.get("metrics", {}).get("test/neg_elbo")
    if test is not None:
        label += f" (test {test:.1f})"
    return {"label": label, "relaxation": relaxation, "estimator": estimator, "curve": curve}
