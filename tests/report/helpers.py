"""Hand-made records and the report scripts, for the tests of experiments.report."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from experiments.report import l2x, nri, vae
from tests.conftest import REPO


def nested(flat: dict[str, object]) -> dict:
    """{"a.b": 1} -> {"a": {"b": 1}}."""
    tree: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def merged(base: dict, over: dict) -> dict:
    """``base`` with ``over``'s values in place, nested dicts merged key by key."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def protocol_config(record: dict) -> dict:
    """``record``'s config on its table's protocol: the protocol's settings (NRI: of its timesteps; L2X: of its
    word2vec epochs, where its config names them) with the record's own config over them."""
    own = record.get("config") or {}
    experiment = record.get("experiment")
    if experiment == "nri":
        protocol = nri.NRI_PROTOCOLS[int(record.get("timesteps") or 10)]
    elif experiment == "l2x":
        epochs = ((own.get("data") or {}).get("w2v") or {}).get("epochs", l2x.L2X_W2V_EPOCHS)
        protocol = l2x.L2X_PROTOCOLS.get(epochs, l2x.L2X_PROTOCOL)
    elif experiment == "vae":
        protocol = vae.VAE_PROTOCOL
    else:
        return own
    return merged(nested(dict(protocol.settings)), own)


def _write(path: Path, protocol: bool = True, **record) -> None:
    """``record`` as JSON at ``path`` (folders made). With ``protocol``, a table record's config is completed to its
    table's protocol (:func:`protocol_config`; the settings the record gives win); ``protocol=False`` writes it as
    given (no config: a record the tables leave out)."""
    if protocol and record.get("table", True) and "experiment" in record:
        record["config"] = protocol_config(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def _records(tmp_path: Path) -> Path:
    """A results folder: two NRI runs, one L2X, one VAE run and a JSON that is no record."""
    res = tmp_path / "results"
    for seed, elbo in enumerate([-1000.0, -1100.0]):
        _write(res / "nri" / f"st{seed}.json", experiment="nri", relaxation="spanning_tree", estimator="relaxed",
               timesteps=10, metrics={"test/elbo": elbo, "test/edge_precision": 0.8, "test/edge_recall": 0.8,
                                      "test/edge_precision_released": 0.9, "test/edge_recall_released": 0.9},
               config={"relaxation": {"tau": 1.0}, "model": {"kl_edges": "directed"}})
    _write(res / "l2x" / "c.json", experiment="l2x", relaxation="corr_topk", estimator="relaxed", k=10, aspect=1,
           metrics={"test/mse": 0.025, "test/subset_precision": 0.6})
    _write(res / "vae" / "g.json", experiment="vae", relaxation="gumbel_softmax", estimator="relaxed",
           metrics={"test/neg_elbo": 100.25})
    _write(res / "bench" / "x.json", name="not a record")
    return res


def script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module (its ``main`` takes an argv list)."""
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
