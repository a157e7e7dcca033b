"""Summaries of a result store: every run's metrics averaged over seeds, and a plain-text table of them.

:func:`summarize` groups the stored runs by method, protocol, dataset, split and variant (a hash of
the shared settings, method parameters and OE corpus, so runs with different settings are never
averaged together); :func:`format_summary` prints its rows, as ``skad-transfer bench`` does at the
end of a sweep.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .store import ResultStore, variant_id

__all__ = ["format_summary", "load_records", "summarize"]


def load_records(store) -> list[dict]:
    """All stored run records (JSON files under ``store/runs``), sorted by file name.

    Raises
    ------
    StoreError
        If one of the files is not a run record (see :func:`~skad_transfer.bench.store.read_record`):
        a damaged record is an error, not skipped, so that no summary silently averages over fewer
        runs than were made.
    """
    return ResultStore(store).records()


def summarize(store) -> list[dict]:
    """Mean and standard deviation over seeds of every (method, protocol, dataset, split, settings).

    Parameters
    ----------
    store : str or path-like
        Result store folder.

    Returns
    -------
    rows : list of dict
        Keys ``method``, ``protocol``, ``dataset``, ``split``, ``variant`` (a short hash of the
        shared settings, method parameters and OE corpus, so runs with different settings are
        never averaged together), ``variant_label`` (what sets the variant apart from the other
        variants of its method and split, e.g. ``"lr=0.1"``; empty when it has none), ``n_seeds``, ``seeds``, ``auc_mean``, ``auc_std``, ``ap_mean``, ``ap_std``,
        ``fit_seconds`` (mean). The std is numpy's default (population, ``ddof=0``; 0 for one
        seed). Sorted by dataset, protocol, split, method.
    """
    groups: dict[tuple, list[dict]] = {}
    for record in load_records(store):
        config = record.get("config", {})
        variant = variant_id(config)
        key = (record["dataset"], record["protocol"], record["split"], record["method"], variant)
        groups.setdefault(key, []).append(record)
    # A variant is named by what sets it apart from the other variants of its method and split.
    described: dict[tuple, dict[str, dict]] = {}
    for (dataset, protocol, split, method, variant), records in groups.items():
        described.setdefault((dataset, protocol, split, method), {})[variant] = _flat_settings(records[0]["config"])
    rows = []
    for (dataset, protocol, split, method, variant), records in sorted(groups.items()):
        auc = np.array([r["metrics"]["auc"] for r in records], dtype=float)
        ap = np.array([r["metrics"]["ap"] for r in records], dtype=float)
        siblings = described[(dataset, protocol, split, method)]
        differing = sorted({k for flat in siblings.values() for k in flat
                            if len({repr(other.get(k)) for other in siblings.values()}) > 1})
        label = " ".join(f"{k}={siblings[variant].get(k)}" for k in differing)
        rows.append({"method": method, "protocol": protocol, "dataset": dataset, "split": split,
                     "variant": variant, "variant_label": label, "n_seeds": len(records),
                     "seeds": sorted(r["seed"] for r in records),
                     "auc_mean": float(auc.mean()), "auc_std": float(auc.std()),
                     "ap_mean": float(ap.mean()), "ap_std": float(ap.std()),
                     "fit_seconds": float(np.mean([r["timing"]["fit_seconds"] for r in records]))})
    return rows


def _flat_settings(config: Mapping[str, Any]) -> dict:
    """A run's settings, method parameters and OE corpus as one flat dict (for variant labels)."""
    flat = {"oe": config.get("outlier_exposure")}
    flat.update({k: v for k, v in (config.get("settings") or {}).items()})
    flat.update({k: v for k, v in (config.get("method_params") or {}).items()})
    return flat


def format_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of :func:`summarize` rows (AUC and AP in percent, mean (std)), under a line
    that says what the numbers are."""
    if not rows:
        return "(no finished runs)"
    head = ["dataset", "protocol", "split", "method", "variant", "seeds", "AUC %", "AP %", "fit s"]
    body = [[r["dataset"], r["protocol"], r["split"], r["method"],
             f"{r['variant']} {r['variant_label']}".strip() if r.get("variant_label") else r["variant"],
             str(r["n_seeds"]),
             f"{100 * r['auc_mean']:.1f} ({100 * r['auc_std']:.1f})",
             f"{100 * r['ap_mean']:.1f} ({100 * r['ap_std']:.1f})", f"{r['fit_seconds']:.1f}"] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["AUC and AP of the test images, anomalies as the positive class, in %: mean (std) over seeds",
             "  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)
