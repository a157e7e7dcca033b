"""Paper-style tables and figures from a result store (``skad-transfer report STORE``).

:func:`build_report` reads the runs of a store written by :mod:`skad_transfer.bench.runner` and
writes, into an output folder:

==============================  ===========================================================  ==========
file                            content                                                      paper
==============================  ===========================================================  ==========
``table5_<dataset>.md/.csv``    one-vs-rest: rows = methods, columns = classes + mean (AUC)   Table 5
``table2_<dataset>.md/.csv``    leave-one-out: rows = held-out classes + mean, AUC and AP     Table 2
``table3_<dataset>.md/.csv``    leave-one-out on STL-10: same layout, AP only                 Table 3
``table6_<dataset>.md/.csv``    OE ablation: rows = methods, columns = corpora (mean AUC)     Table 6
``fig1_interventions_*.png``    AUC per intervention and method (plus a table of the bars)    Fig. 1
``fig2_shift_*.png``            AUC vs number of normal colours, per method                   Fig. 2
``fig3_tsne.png``               t-SNE of a run's stored test features (``--tsne`` only)       Fig. 3
``fig4_top_anomalies.png``      the top-k most anomalous test images of one run               Fig. 4
``report.md``                   every table, settings, commands and figure links
==============================  ===========================================================  ==========

Only the tables of protocols present in the store are written. Cells are ``mean (std)`` over
seeds in percent with one decimal, exactly the numbers of
:func:`~skad_transfer.bench.summary.summarize` (the population std, ``ddof=0``). A "mean" column /
row averages the per-class means; its std is the std over seeds of the per-seed class average
(seeds present for every class only).
Runs of one method with different settings, method parameters or OE corpus (different
``variant`` in :func:`summarize`) get separate rows, labelled ``method [variant]``.

The report reads the store and draws; it fits nothing. Tables and Figs. 1 and 2 come from the
records' metrics, Fig. 4 from a run's stored scores, Fig. 3 from the test features a run stored
when it was made (``skad-transfer bench --save-features``). Every table cell and figure is found by
the fields of the runs' split metadata (``config["split_meta"]``: class index and name, OE label,
intervened factor, colour step), never by reading split names. The test images themselves are not
in the store: Fig. 4 (and the class colours of Fig. 3) re-create them from the run's configuration
with the protocol functions (:func:`~skad_transfer.bench.recreate.recreate_split`): exactly for the
synthetic generators and scikit-learn's digits, by reloading ``cifar10-jpg.zip`` from ``--data`` for
CIFAR-10. When that is impossible the figure is skipped with a message.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_text
from ..plotting import plot_embedding, plot_image_grid, plot_interventions, plot_shift
from .recreate import recreate_split, recreate_test_classes, split_meta
from .store import ResultStore, StoreError, corpus_label, variant_id
from .summary import summarize

__all__ = ["ReportResult", "add_arguments", "build_report", "recreate_split", "run"]

#: Paper table per class protocol.
_TABLE_PROTOCOLS = ("one-vs-rest", "leave-one-out", "oe-ablation")
#: Preference order when picking the run shown in Figs. 3 and 4.
_RUN_PREFERENCE = ("leave-one-out", "one-vs-rest", "oe-ablation", "interventions", "non-semantic-shift")
_STL_NAMES = ("stl10", "stl-10")


@dataclass
class ReportResult:
    """What :func:`build_report` wrote.

    Attributes
    ----------
    markdown : Path
        ``report.md``.
    tables : dict of str to Path
        Table key (e.g. ``"table5_cifar10"``) -> CSV path (a ``.md`` file sits next to it).
    figures : dict of str to Path
        Figure key -> PNG path.
    skipped : list of str
        One message per figure that could not be made.
    """

    markdown: Path
    tables: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)


# ----------------------------------------------------------------------------- grouping
def _fmt(mean: float, std: float | None) -> str:
    if mean is None or not np.isfinite(mean):
        return "—"
    if std is None or not np.isfinite(std):
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ({100 * std:.1f})"


def _class_label(record: Mapping[str, Any]) -> str:
    return str(split_meta(record, "class_name"))


def _class_order(record: Mapping[str, Any]):
    meta = record["config"].get("split_meta", {})
    for key in ("normal_class", "anomaly_class", "step"):
        if isinstance(meta.get(key), (int, float)):
            return (0, meta[key], "")
    return (1, 0, record["split"])


def _oe_label(record: Mapping[str, Any]) -> str:
    return str(split_meta(record, "oe"))


class _Group:
    """Records of one table (dataset x protocol) and the summarize() rows that describe them."""

    def __init__(self, records: list[dict], rows: list[dict]):
        self.records = records
        with_oe = records[0]["protocol"] != "oe-ablation"
        self.with_oe = with_oe
        variants = {}
        for r in records:
            variants.setdefault(r["method"], {}).setdefault(self._table_variant(r["config"]), r["config"])
        self.row_keys: list[tuple[str, str]] = []   # (method, table variant)
        self.labels: dict[tuple[str, str], str] = {}
        self.configs: dict[tuple[str, str], dict] = {}
        for method in sorted(variants):
            for v, config in variants[method].items():
                key = (method, v)
                self.row_keys.append(key)
                self.labels[key] = method if len(variants[method]) == 1 else f"{method} [{v}]"
                self.configs[key] = config
        # summarize rows by (split, method, summarize variant)
        self.rows = {(row["split"], row["method"], row["variant"]): row for row in rows}

    def _table_variant(self, config) -> str:
        # OE ablation: the corpora are the columns, not a setting of the row. Elsewhere the corpus
        # counts by its label: OE arrays generated per split are data, not a setting.
        return variant_id(config, outlier_exposure="label" if self.with_oe else None)

    def row_key(self, record) -> tuple[str, str]:
        return record["method"], self._table_variant(record["config"])

    def columns(self, label=_class_label) -> list[tuple[str, list[str]]]:
        """Ordered column labels with the split names that fall in each."""
        cols: dict[str, tuple[Any, set]] = {}
        for r in self.records:
            lab = label(r)
            order, names = cols.setdefault(lab, (_class_order(r), set()))
            names.add(r["split"])
        return [(lab, sorted(names)) for lab, (order, names) in sorted(cols.items(), key=lambda kv: (kv[1][0], kv[0]))]

    def cell(self, key, splits: Sequence[str]) -> dict | None:
        """The summarize() row of this table row in one of ``splits`` (None if absent)."""
        for r in self.records:
            if r["split"] in splits and self.row_key(r) == key:
                return self.rows.get((r["split"], r["method"], variant_id(r["config"])))
        return None

    def seed_mean(self, key, columns, metric: str) -> tuple[float, float]:
        """Mean over columns of the per-column means; std over seeds of per-seed column averages."""
        per_col = []
        for _, splits in columns:
            row = self.cell(key, splits)
            if row is None:
                return float("nan"), float("nan")
            per_col.append(row[f"{metric}_mean"])
        by_seed: dict[int, dict[str, float]] = {}
        for r in self.records:
            if self.row_key(r) == key:
                col = next((lab for lab, splits in columns if r["split"] in splits), None)
                if col is not None:
                    by_seed.setdefault(r["seed"], {})[col] = r["metrics"][metric]
        full = [np.mean(list(v.values())) for v in by_seed.values() if len(v) == len(columns)]
        return float(np.mean(per_col)), (float(np.std(full)) if full else float("nan"))


def _settings_text(group: _Group) -> str:
    lines = []
    for key in group.row_keys:
        config = group.configs[key]
        s = config.get("settings", {})
        weights = "random init" if s.get("weights") is None else s.get("weights")
        parts = [f"dataset {config.get('dataset')}", f"epochs {s.get('epochs')}", f"weights {weights}"]
        if s.get("width") is not None:
            parts.append(f"width {s['width']}")
        parts += [f"lr {s.get('lr')}", f"batch size {s.get('batch_size')}"]
        if group.with_oe:
            oe = config.get("outlier_exposure")
            if corpus_label(oe) != oe:   # an array, generated per split: its label without the digest
                oe = f"{corpus_label(oe)} (generated)"
            parts.append(f"OE {oe}")
        if config.get("method_params"):
            parts.append(f"method params {config['method_params']}")
        seeds = sorted({r["seed"] for r in group.records if group.row_key(r) == key})
        parts.append(f"seeds {seeds}")
        lines.append(f"- {group.labels[key]}: " + ", ".join(parts))
    return "\n".join(lines)


def _bench_command(group: _Group) -> str:
    """An equivalent ``skad-transfer bench`` command for the runs of a table."""
    first = group.records[0]
    config, meta = first["config"], first["config"].get("split_meta", {})
    s = config.get("settings", {})
    args = ["skad-transfer", "bench", "--dataset", first["dataset"], "--protocol", first["protocol"],
            "--methods", *sorted({r["method"] for r in group.records}),
            "--seeds", *[str(x) for x in sorted({r["seed"] for r in group.records})]]
    # Settings left at the estimators' defaults (None) have no flag: "--epochs None" would not parse.
    for key, flag in (("epochs", "--epochs"), ("steps", "--steps")):
        if s.get(key) is not None:
            args += [flag, str(s[key])]
    args += ["--weights", "none" if s.get("weights") is None else str(s.get("weights"))]
    if s.get("width") is not None:
        args += ["--width", str(s["width"])]
    for key, flag in (("lr", "--lr"), ("batch_size", "--batch-size")):
        if s.get(key) is not None:
            args += [flag, str(s[key])]
    if first["protocol"] in ("one-vs-rest", "leave-one-out", "oe-ablation"):
        key = "normal_class" if "normal_class" in meta else "anomaly_class"
        classes = sorted({r["config"]["split_meta"].get(key) for r in group.records} - {None})
        args += ["--classes", *[str(c) for c in classes]]
        if first["protocol"] == "oe-ablation":
            args += ["--oe-corpora", *sorted({_oe_label(r) for r in group.records})]
    else:
        for k, flag in (("n_normal", "--n-normal"), ("n_outlier", "--n-outlier"), ("n_test", "--n-test")):
            if meta.get(k) is not None:
                args += [flag, str(meta[k])]
    if isinstance(meta.get("random_state"), int):
        args += ["--data-seed", str(meta["random_state"])]
    return shlex.join(args)


# ----------------------------------------------------------------------------- tables
@dataclass
class _Table:
    key: str
    title: str
    header: list
    body: list            # formatted cells
    csv_header: list
    csv_body: list        # numeric cells
    notes: str


def _pct(x) -> str:
    return "" if x is None or not np.isfinite(x) else f"{100 * x:.4f}"


def _methods_by_columns(group: _Group, columns, metric: str, key: str, title: str, first: str) -> _Table:
    header = [first] + [c for c, _ in columns] + ["mean"]
    csv_header = [first] + [h for c, _ in columns for h in (c, f"{c} std")] + ["mean", "mean std"]
    body, csv_body = [], []
    for rk in group.row_keys:
        cells, nums = [group.labels[rk]], [group.labels[rk]]
        for _, splits in columns:
            row = group.cell(rk, splits)
            m = row[f"{metric}_mean"] if row else None
            sd = row[f"{metric}_std"] if row else None
            cells.append(_fmt(m, sd))
            nums += [_pct(m), _pct(sd)]
        m, sd = group.seed_mean(rk, columns, metric)
        cells.append(_fmt(m, sd))
        nums += [_pct(m), _pct(sd)]
        body.append(cells)
        csv_body.append(nums)
    return _Table(key, title, header, body, csv_header, csv_body, "")


def _classes_by_rows(group: _Group, metrics: Sequence[str], key: str, title: str) -> _Table:
    columns = group.columns()
    multi = len(metrics) > 1
    header, csv_header = ["held-out class"], ["held-out class"]
    for rk in group.row_keys:
        for metric in metrics:
            name = f"{group.labels[rk]} {metric.upper()}" if multi else group.labels[rk]
            header.append(name)
            csv_header += [name, f"{name} std"]
    body, csv_body = [], []
    for lab, splits in columns:
        cells, nums = [lab], [lab]
        for rk in group.row_keys:
            row = group.cell(rk, splits)
            for metric in metrics:
                m = row[f"{metric}_mean"] if row else None
                sd = row[f"{metric}_std"] if row else None
                cells.append(_fmt(m, sd))
                nums += [_pct(m), _pct(sd)]
        body.append(cells)
        csv_body.append(nums)
    for metric in metrics:
        label = f"m{metric.upper()}"
        cells, nums = [label], [label]
        for rk in group.row_keys:
            for mt in metrics:
                if mt == metric:
                    m, sd = group.seed_mean(rk, columns, metric)
                    cells.append(_fmt(m, sd))
                    nums += [_pct(m), _pct(sd)]
                else:
                    cells.append("")
                    nums += ["", ""]
        body.append(cells)
        csv_body.append(nums)
    return _Table(key, title, header, body, csv_header, csv_body, "")


def _oe_table(group: _Group, key: str, title: str) -> _Table:
    corpora = sorted({_oe_label(r) for r in group.records})
    header = ["method"] + corpora
    csv_header = ["method"] + [h for c in corpora for h in (c, f"{c} std")]
    body, csv_body = [], []
    for rk in group.row_keys:
        cells, nums = [group.labels[rk]], [group.labels[rk]]
        for corpus in corpora:
            sub = _Group([r for r in group.records if _oe_label(r) == corpus], list(group.rows.values()))
            sub_key = next((k for k in sub.row_keys if k[0] == rk[0] and k[1] == rk[1]), None)
            if sub_key is None:
                m = sd = None
            else:
                m, sd = sub.seed_mean(sub_key, sub.columns(), "auc")
            cells.append(_fmt(m, sd))
            nums += [_pct(m), _pct(sd)]
        body.append(cells)
        csv_body.append(nums)
    return _Table(key, title, header, body, csv_header, csv_body, "")


def _markdown_table(table: _Table) -> str:
    rule = "|" + "|".join(["---"] + [":---:"] * (len(table.header) - 1)) + "|"
    lines = ["| " + " | ".join(table.header) + " |", rule]
    lines += ["| " + " | ".join(row) + " |" for row in table.body]
    return "\n".join(lines)


def _build_tables(records: list[dict], rows: list[dict]) -> list[tuple[_Table, _Group]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["protocol"]), []).append(r)
    out = []
    order = {p: i for i, p in enumerate(("leave-one-out", "one-vs-rest", "oe-ablation", "interventions",
                                         "non-semantic-shift"))}
    for (dataset, protocol), recs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][1], 99), kv[0])):
        group = _Group(recs, [row for row in rows if row["dataset"] == dataset and row["protocol"] == protocol])
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset)
        if protocol == "one-vs-rest":
            t = _methods_by_columns(group, group.columns(), "auc", f"table5_{slug}",
                                    f"Table 5: AUC (%) on the {dataset} one-vs-rest benchmark "
                                    f"(column = normal class)", "method")
        elif protocol == "leave-one-out" and dataset.lower() in _STL_NAMES:
            t = _classes_by_rows(group, ["ap"], f"table3_{slug}", f"Table 3: AP (%) on the {dataset} "
                                                                  f"semantic AD (leave-one-out) benchmark")
        elif protocol == "leave-one-out":
            t = _classes_by_rows(group, ["auc", "ap"], f"table2_{slug}",
                                 f"Table 2: AUC and AP (%) on the {dataset} semantic AD (leave-one-out) benchmark")
        elif protocol == "oe-ablation":
            t = _oe_table(group, f"table6_{slug}", f"Table 6: mean AUC (%) over classes on the {dataset} "
                                                   f"one-vs-rest benchmark for different OE corpora")
        elif protocol == "interventions":
            cols = group.columns(label=lambda r: r["split"])
            t = _methods_by_columns(group, cols, "auc", f"fig1_interventions_{slug}",
                                    f"Figure 1 (data): AUC (%) under interventions on {dataset}", "method")
        elif protocol == "non-semantic-shift":
            cols = group.columns(label=lambda r: r["split"])
            t = _methods_by_columns(group, cols, "auc", f"fig2_shift_{slug}",
                                    f"Figure 2 (data): AUC (%) under non-semantic colour shift on {dataset}",
                                    "method")
        else:
            continue
        t.notes = (f"Cells: mean (std) over seeds, in percent; std with ddof=0.\n\nSettings:\n"
                   f"{_settings_text(group)}\n\nRuns (equivalent command): `{_bench_command(group)}`")
        out.append((t, group))
    return out


# ----------------------------------------------------------------------------- figures
def _fig_interventions(group: _Group, path: Path) -> Path:
    interventions = {}
    for r in sorted(group.records, key=lambda r: r["split"]):
        interventions[str(split_meta(r, "factor"))] = str(split_meta(r, "value"))
    table: dict[str, dict[str, float]] = {}
    for rk in group.row_keys:
        row = {}
        for factor in interventions:
            cell = group.cell(rk, [r["split"] for r in group.records if str(split_meta(r, "factor")) == factor])
            row[factor] = cell["auc_mean"] if cell else float("nan")
        table[group.labels[rk]] = row
    return plot_interventions(table, interventions, path)


def _fig_shift(group: _Group, path: Path) -> Path:
    steps = sorted({int(split_meta(r, "step")) for r in group.records})
    colors_at = {}
    for r in group.records:
        colors_at.setdefault(int(split_meta(r, "step")), split_meta(r, "normal_colors"))
    curves = {}
    for rk in group.row_keys:
        xs, means, stds = [], [], []
        for k in steps:
            cell = group.cell(rk, [r["split"] for r in group.records if int(split_meta(r, "step")) == k])
            if cell:
                xs.append(k), means.append(cell["auc_mean"]), stds.append(cell["auc_std"])
        curves[group.labels[rk]] = (xs, means, stds)
    ticks = [f"{k}" + (f"\n+{colors_at[k][-1]}" if colors_at.get(k) else "") for k in steps]
    return plot_shift(curves, steps, ticks, path)


def _pick_run(records: list[dict], run_id: str | None) -> dict:
    if run_id is not None:
        for r in records:
            if r.get("run_id") == run_id:
                return r
        raise ValueError(f"--run {run_id!r}: no such run in the store")
    rank = {p: i for i, p in enumerate(_RUN_PREFERENCE)}
    return min(records, key=lambda r: (rank.get(r["protocol"], 99), r["method"] != "adib", r["split"], r["seed"],
                                       r.get("run_id", "")))


def _fig_top_anomalies(record, store: ResultStore, data, path: Path, top_k: int) -> Path:
    stored = store.read_scores(record["run_id"])   # a damaged store is an error, whatever the data
    split = recreate_split(record, data)
    if not np.array_equal(stored["labels"], split.y_test):
        raise LookupError(f"run {record['run_id']}: the re-created test labels differ from the stored ones")
    order = np.argsort(stored["scores"], kind="stable")[:top_k]     # lowest score_samples = most anomalous
    title = (f"Top {len(order)} anomalies: {record['method']}, {record['dataset']} {record['protocol']} "
             f"{record['split']}, seed {record['seed']}")
    return plot_image_grid([split.X_test[i] for i in order], split.y_test[order] == -1, title, path)


def _fig_tsne(record, store: ResultStore, data, path: Path) -> Path:
    from sklearn.manifold import TSNE

    stored = store.read_scores(record["run_id"])
    if "features" not in stored:
        raise LookupError(f"run {record['run_id']} has no stored features: make the runs with 'skad-transfer "
                          f"bench --save-features' (a stored run is not redone: use a new store, or delete the "
                          f"run's two files first)")
    Z = np.asarray(stored["features"], dtype=np.float64)
    perplexity = float(min(30.0, max(2.0, (len(Z) - 1) / 3)))
    E = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(Z)
    title = (f"t-SNE of {record['method']} features ({record['dataset']} {record['split']}, "
             f"seed {record['seed']})")
    return plot_embedding(E, stored["labels"] == -1, title, path,
                          classes=recreate_test_classes(record, stored["labels"], data))


# ----------------------------------------------------------------------------- main
def build_report(store, out=None, *, data=None, top_k: int = 16, run_id: str | None = None, tsne: bool = False,
                 command: str | None = None, verbose: bool = True) -> ReportResult:
    """Write paper-style tables (Markdown + CSV) and figures (PNG) of a result store.

    Parameters
    ----------
    store : str, path-like or ResultStore
        Result store folder (holding ``runs/``).
    out : str or path-like, optional
        Output folder (created); default ``STORE/report``.
    data : str or path-like, optional
        Folder holding ``cifar10-jpg.zip``, to reload CIFAR-10 test images for Fig. 4 and the
        class colours of Fig. 3.
    top_k : int, default=16
        Images in the top-anomalies grid (Fig. 4).
    run_id : str, optional
        The run shown in Figs. 3 and 4; default: the first leave-one-out (else one-vs-rest,
        OE ablation, interventions, shift) run, ADIB first.
    tsne : bool, default=False
        Draw a t-SNE of that run's test features (Fig. 3), which the run stored when it was made
        (``skad-transfer bench --save-features``); skipped with a message for a run without them.
    command : str, optional
        The command line quoted in the report (default: the Python call).
    verbose : bool, default=True
        Print what was written and skipped.

    Returns
    -------
    result : ReportResult

    Raises
    ------
    FileNotFoundError
        If ``store`` does not exist (NotADirectoryError if it, or ``out``, is a file).
    ValueError
        If it holds no finished runs, ``run_id`` is not one of them, or ``top_k`` < 1.
    StoreError
        (a ValueError) If a run's JSON or scores file is damaged, or a record's run id is not one
        :func:`~skad_transfer.bench.store.config_id` writes; the message names the file. Every file
        of the report is written atomically (a temporary name, then :func:`os.replace`), so a
        report interrupted midway leaves the previous version of each file whole.
    """
    store = ResultStore(store)
    root = store.root
    out, records = _check_report_inputs(store, out, top_k)
    out.mkdir(parents=True, exist_ok=True)
    command = command or f"build_report({str(root)!r}, {str(out)!r})"
    rows = summarize(store)
    result = ReportResult(markdown=out / "report.md")
    sections = [f"# Benchmark report\n\nStore: `{root}` ({len(records)} runs). Produced by `{command}`.\n"]
    for table, group in _build_tables(records, rows):
        sections.append(_write_table(table, group, out, command, result))
    record = _pick_run(records, run_id)
    sections += _write_run_figures(record, store, data, out, top_k, tsne, result)
    atomic_write_text(result.markdown, "\n".join(sections))
    if verbose:
        _print_result(result)
    return result


def _check_report_inputs(store: ResultStore, out, top_k) -> tuple[Path, list[dict]]:
    """The output folder of a report (default ``STORE/report``) and the store's records.

    Raises
    ------
    ValueError
        If ``top_k`` is not an int >= 1 or the store holds no finished runs.
    FileNotFoundError, NotADirectoryError
        If the store is missing, or it or the output folder is a file.
    """
    root = store.root
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"result store {root} is a file, not a folder written by skad-transfer bench")
    if not root.is_dir():
        raise FileNotFoundError(f"result store not found: {root}")
    out = Path(out) if out is not None else root / "report"
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"report output {out} is a file, not a folder")
    records = store.records()   # StoreError (naming the file) for a damaged record
    if not records:
        raise ValueError(f"result store {root} holds no finished runs (no {store.runs_dir}/*.json)")
    return out, records


def _write_table(table: _Table, group: _Group, out: Path, command: str, result: ReportResult) -> str:
    """Write one table (Markdown, CSV) and its figure (Figs. 1 and 2) into ``out``; return its report section.

    The files written are added to ``result``, a figure that could not be drawn to ``result.skipped``.
    """
    md = f"## {table.title}\n\n{_markdown_table(table)}\n\n{table.notes}\n"
    atomic_write_text(out / f"{table.key}.md", md + f"\nProduced by `{command}`.\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(table.csv_header)
    writer.writerows(table.csv_body)
    atomic_write_text(out / f"{table.key}.csv", buffer.getvalue())
    result.tables[table.key] = out / f"{table.key}.csv"
    figure = None
    try:
        if group.records[0]["protocol"] == "interventions":
            figure = _fig_interventions(group, out / f"{table.key}.png")
        elif group.records[0]["protocol"] == "non-semantic-shift":
            figure = _fig_shift(group, out / f"{table.key}.png")
    except StoreError:
        raise   # a damaged store is an error, not a missing figure
    except Exception as error:  # noqa: BLE001 - a figure must not sink the report
        result.skipped.append(f"{table.key}.png: {type(error).__name__}: {error}")
    if figure is not None:
        result.figures[table.key] = figure
        md += f"\n![{table.title}]({figure.name})\n"
    md += f"\nCSV: [{table.key}.csv]({table.key}.csv)\n"
    return md


def _write_run_figures(record: dict, store: ResultStore, data, out: Path, top_k: int, tsne: bool,
                       result: ReportResult) -> list[str]:
    """Draw the figures of one run (Fig. 4, and Fig. 3 with ``tsne``) into ``out``; return their report sections.

    The files written are added to ``result``, a figure that could not be drawn to ``result.skipped``
    (its section then says why).
    """
    sections = []
    for key, title, make in (
            ("fig4_top_anomalies", f"Figure 4: the {top_k} most anomalous test images",
             lambda p: _fig_top_anomalies(record, store, data, p, top_k)),
            ("fig3_tsne", "Figure 3: t-SNE of learned features",
             (lambda p: _fig_tsne(record, store, data, p)) if tsne else None)):
        if make is None:
            continue
        try:
            path = make(out / f"{key}.png")
        except StoreError:
            raise
        except Exception as error:  # noqa: BLE001
            result.skipped.append(f"{key}.png: {type(error).__name__}: {error}")
            sections.append(f"## {title}\n\nSkipped: {error}\n")
            continue
        result.figures[key] = path
        sections.append(f"## {title}\n\nRun `{record['run_id']}`: {record['method']}, {record['dataset']} "
                        f"{record['protocol']} `{record['split']}`, seed {record['seed']}.\n\n"
                        f"![{title}]({path.name})\n")
    return sections


def _print_result(result: ReportResult) -> None:
    """Print what a report wrote (to stdout) and skipped (to stderr)."""
    print(f"report: {result.markdown}")
    for key, path in {**result.tables, **result.figures}.items():
        print(f"  {key}: {path}")
    for message in result.skipped:
        print(f"  skipped {message}", file=sys.stderr)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``skad-transfer report``."""
    a = parser.add_argument
    a("store", help="result store folder written by 'skad-transfer bench'")
    a("--output", "-o", "--out", dest="out", help="output folder (default STORE/report)")
    a("--data", help="folder holding cifar10-jpg.zip, to reload CIFAR-10 test images for Figs. 3 and 4")
    a("--top-k", dest="top_k", type=int, default=16, help="images in the top-anomalies grid (default 16)")
    a("--run", dest="run_id", help="run id shown in Figs. 3 and 4 (default: a leave-one-out/one-vs-rest ADIB run)")
    a("--tsne", action="store_true", help="draw a t-SNE of that run's stored test features (Fig. 3; the runs "
                                          "must have been made with 'skad-transfer bench --save-features')")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``skad-transfer report``."""
    argv = ["skad-transfer", "report", args.store]
    for flag, value in (("--out", args.out), ("--data", args.data), ("--run", args.run_id)):
        if value:
            argv += [flag, str(value)]
    if args.top_k != 16:
        argv += ["--top-k", str(args.top_k)]
    if args.tsne:
        argv += ["--tsne"]
    build_report(args.store, args.out, data=args.data, top_k=args.top_k, run_id=args.run_id, tsne=args.tsne,
                 command=shlex.join(argv))
    return 0
