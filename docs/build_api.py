"""Generate docs/api.md, the API reference, from the package's docstrings.

    python docs/build_api.py [--check]

``--check`` exits 1 when docs/api.md is not what the docstrings generate (the test suite runs it).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

MODULES = {
    "skad_transfer": "Estimators, networks and weights",
    "skad_transfer.nn": "Backbones and adapters",
    "skad_transfer.data.catalogue": "The dataset catalogue",
    "skad_transfer.data.datasets": "Dataset loaders",
    "skad_transfer.data.labelled": "Labelled data for pretraining",
    "skad_transfer.data.synthetic": "Synthetic interventions",
    "skad_transfer.data.corpora": "Outlier-exposure corpora",
    "skad_transfer.data.sampling": "Index draws that do not grow with the corpus",
    "skad_transfer.weights": "Weights records",
    "skad_transfer.pretrain": "Pretraining theta0",
    "skad_transfer.scoring": "Scores: the logit, kNN on the fitted features, their sum",
    "skad_transfer.export": "Deployment (ONNX)",
    "skad_transfer.training": "Training: the loop and its callbacks",
    "skad_transfer.training.callbacks": "Training callbacks",
    "skad_transfer.device": "Device and precision",
    "skad_transfer.inference": "Batched inference",
    "skad_transfer.data.fitdata": "One fit's data path",
    "skad_transfer.bench": "Benchmarks",
    "skad_transfer.bench.devsuite": "The development suite",
}
TARGET = Path(__file__).resolve().parent / "api.md"
CLI_PLUMBING = {"add_arguments", "run", "main"}


def public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, obj in vars(module).items() if not n.startswith("_")
                 and (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__]
    return [n for n in names if not n.startswith("__")]


def signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def render() -> str:
    out = ["# API reference", "", "Generated from the docstrings by `python docs/build_api.py`; do not edit by hand.", ""]
    seen: set[int] = set()  # a name re-exported by an earlier module is documented once, there
    for module_name, title in MODULES.items():
        module = importlib.import_module(module_name)
        out += [f"## {title} (`{module_name}`)", ""]
        for name in public_names(module):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or callable(obj)) or id(obj) in seen or name in CLI_PLUMBING:
                continue
            seen.add(id(obj))
            kind = "class" if inspect.isclass(obj) else "function"
            out += [f"### `{name}`", "", f"```python\n{kind} {name}{signature(obj)}\n```", ""]
            doc = inspect.getdoc(obj) or "(no docstring)"
            out += [doc, ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = TARGET.read_text() if TARGET.is_file() else ""
        if current != text:
            print(f"{TARGET} is out of date: run python docs/build_api.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
