"""Table protocols: the config keys and values that define a table's cells. A record enters a cell only when its
``config`` has every one of them; every other record is left out and named with the reason.

A protocol is a declaration, a few lines per table (each experiment's module holds its own: ``nri.NRI_PROTOCOLS``,
``l2x.L2X_PROTOCOLS``, ``vae.VAE_PROTOCOLS``; a new table adds one :class:`Protocol` beside them)::

    NRI_CPU = Protocol("NRI at CPU scale", "nri", {"data.num_vertices": 10, "data.num_train": 10_000,
                       "model.encoder_hidden": 64, "data.batch_size": 32, "trainer.max_steps": 2000, ...})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from experiments.report.records import flatten, run_name

NO_CONFIG = "the record has no config, so its protocol cannot be checked"


@dataclass(frozen=True)
class Protocol:
    """A table's protocol: ``settings`` maps dotted config keys (as in a record's ``config``) to the values that
    define the table's cells; ``absent`` gives the value a record that predates a key ran with (a key missing from
    a record and from ``absent`` does not match)."""

    name: str
    experiment: str
    settings: Mapping[str, object]
    absent: Mapping[str, object] = field(default_factory=dict)

    def mismatches(self, record: dict) -> list[str]:
        """``key=value (protocol: value)`` for each setting ``record`` differs in (empty: it matches); a record of
        another experiment or without a config differs as a whole."""
        if record.get("experiment") != self.experiment:
            return [f"experiment={record.get('experiment')} (protocol: {self.experiment})"]
        config = record.get("config")
        if not isinstance(config, dict):
            return [NO_CONFIG]
        flat = flatten(config)
        out = []
        for key, want in self.settings.items():
            if key not in flat and key not in self.absent:
                out.append(f"no {key} in its config (protocol: {want})")
                continue
            have = flat[key] if key in flat else self.absent[key]
            if have != want:
                out.append(f"{key}={have} (protocol: {want})")
        return out

    def matches(self, record: dict) -> bool:
        """Whether ``record`` follows this protocol."""
        return not self.mismatches(record)

    def derive(self, name: str, **changes: object) -> Protocol:
        """This protocol under another ``name`` with some settings changed (keys with dots as ``__``:
        ``derive("T = 20", data__timesteps=20)``)."""
        settings = {**self.settings, **{k.replace("__", "."): v for k, v in changes.items()}}
        return Protocol(name, self.experiment, settings, self.absent)


def matching(records: Iterable[dict], protocol: Protocol) -> list[dict]:
    """The records of ``protocol``'s experiment that follow it."""
    return [r for r in records if r.get("experiment") == protocol.experiment and protocol.matches(r)]


def describe(record: dict) -> str:
    """A record for messages: experiment, relaxation/estimator, k or T where set, seed, and its run."""
    parts = [str(record.get("experiment")), f"{record.get('relaxation')}/{record.get('estimator')}"]
    parts += [f"{label}={record[key]}" for key, label in (("k", "k"), ("timesteps", "T")) if key in record]
    parts.append(f"seed {record.get('seed', '?')}")
    return f"{' '.join(parts)} ({run_name(record)})"


def admit(records: Iterable[dict], protocols: Sequence[Protocol]) -> tuple[list[dict], list[str]]:
    """(admitted, left out): the records that follow one of the protocols of their experiment (records of an
    experiment without a protocol pass), and for each other record a line with the reasons against the protocol
    it comes closest to."""
    by_experiment: dict[str, list[Protocol]] = {}
    for p in protocols:
        by_experiment.setdefault(p.experiment, []).append(p)
    admitted, left = [], []
    for record in records:
        candidates = by_experiment.get(str(record.get("experiment")), [])
        reasons = [(p, p.mismatches(record)) for p in candidates]
        if not candidates or any(not why for _, why in reasons):
            admitted.append(record)
            continue
        closest, why = min(reasons, key=lambda pw: len(pw[1]))
        left.append(f"{describe(record)}: off the protocol of {closest.name!r}: {'; '.join(why)}")
    return admitted, left
