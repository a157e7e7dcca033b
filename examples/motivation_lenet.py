"""
The paper's motivation: OC-SVM probes on LeNet features
=======================================================

The paper's motivation experiment (Sec. 3, Table 1) in miniature: OC-SVM probes on LeNet features.

A LeNet is trained three ways, then a one-class SVM (StandardScaler + OneClassSVM, the same for all)
is fitted on the normal training images' features at conv1, conv2 and conv3, and scored on test
sets with anomalies:

  (i)   self-supervised: predict which of 4 rotations was applied to a normal image (Hendrycks 2019c);
  (ii)  weakly supervised: tell normal images from an outlier-exposure (OE) corpus (Hendrycks 2019b);
  (iii) transfer: first classify a labelled set (the transfer task), then OE fine-tuning as in (ii).

    python examples/motivation_lenet.py                 # synthetic interventions, 5 seeds
    python examples/motivation_lenet.py --tiny          # seconds: a smoke run
    python examples/motivation_lenet.py --cifar10 cifar10.zip --cifar100 cifar100.zip

Synthetic (default): normal = red small circles; the test sets change colour, shape or size
(``skad_transfer.data.synthetic.make_intervention_task``); OE = its corpus of other combinations;
the transfer task classifies colour x shape of freely drawn objects (``make_interventions``).
CIFAR (``--cifar10``, an image-folder zip or folder with ``train``/``test`` splits): one class
normal, all test images scored (one-vs-rest), OE and transfer task = ``--cifar100`` (its labels),
as in the paper. The table reports mean AUC and the improvement over a random scorer,
100 * (AUC - 0.5) / 0.5 percent, as mean (std) over seeds; the figure draws the mean AUC per layer
(error bars: std over seeds).
"""

import argparse
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM
from torch import nn

LAYERS = ("conv1", "conv2", "conv3")
PARADIGMS = ("self-supervised", "weakly supervised (OE)", "transfer + OE")


class LeNet(nn.Module):
    """LeNet-5 for 3x32x32 images; ``features`` returns the (pooled) maps after conv1, conv2, conv3."""

    def __init__(self, n_outputs: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.conv3 = nn.Conv2d(16, 120, 5)
        self.fc1 = nn.Linear(120, 84)
        self.head = nn.Linear(84, n_outputs)

    def features(self, x):
        f1 = F.max_pool2d(F.relu(self.conv1(x)), 2)  # 6 x 14 x 14
        f2 = F.max_pool2d(F.relu(self.conv2(f1)), 2)  # 16 x 5 x 5
        f3 = F.relu(self.conv3(f2))  # 120 x 1 x 1
        return {"conv1": f1, "conv2": f2, "conv3": f3}

    def forward(self, x):
        return self.head(F.relu(self.fc1(self.features(x)["conv3"].flatten(1))))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.25


def fit_classifier(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int, lr=1e-3,
                   batch_size=128) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()


def rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    return rotated, torch.arange(4).repeat_interleave(len(x))


def normal_vs_oe(x_normal: torch.Tensor, x_outlier: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([x_normal, x_outlier]), torch.cat([torch.zeros(len(x_normal)), torch.ones(len(x_outlier))]).long()


def train_three_ways(data: dict, *, epochs: int, seed: int) -> dict[str, nn.Module]:
    x_normal, x_outlier = data["x_normal"], data["x_outlier"]
    networks = {}
    torch.manual_seed(seed)
    networks[PARADIGMS[0]] = fit_classifier(LeNet(4), *rotations(x_normal), epochs=epochs, seed=seed)
    torch.manual_seed(seed)
    networks[PARADIGMS[1]] = fit_classifier(LeNet(2), *normal_vs_oe(x_normal, x_outlier), epochs=epochs, seed=seed)
    torch.manual_seed(seed)
    net = fit_classifier(LeNet(data["n_classes"]), data["x_transfer"], data["y_transfer"], epochs=epochs, seed=seed)
    net.head = nn.Linear(84, 2)  # a fresh head for the AD task, the transferred layers kept
    networks[PARADIGMS[2]] = fit_classifier(net, *normal_vs_oe(x_normal, x_outlier), epochs=epochs, seed=seed + 1)
    return networks


@torch.no_grad()
def layer_features(net: LeNet, x: torch.Tensor, layer: str, batch_size=512) -> np.ndarray:
    return torch.cat([net.features(x[i:i + batch_size])[layer].flatten(1)
                      for i in range(0, len(x), batch_size)]).numpy()


def probe_aucs(net: LeNet, data: dict) -> dict[str, float]:
    """Mean AUC over the test sets of an OC-SVM on each layer's features of the normal images."""
    out = {}
    for layer in LAYERS:
        probe = make_pipeline(StandardScaler(), OneClassSVM()).fit(layer_features(net, data["x_normal"], layer))
        out[layer] = float(np.mean([roc_auc_score(y, probe.score_samples(layer_features(net, x, layer)))
                                    for x, y in data["tests"]]))
    return out


def synthetic_data(args, seed: int) -> list[dict]:
    from skad_transfer.data.synthetic import COLOR_NAMES, SHAPE_NAMES, make_intervention_task, make_interventions

    task = make_intervention_task(args.n_normal, args.n_outlier, args.n_test, random_state=seed)
    X_transfer, factors = make_interventions(args.n_transfer, random_state=seed + 1000)
    return [{
        "name": "interventions (" + ", ".join(task.tests) + ")",
        "x_normal": to_tensor(task.X_normal),
        "x_outlier": to_tensor(task.X_outlier),
        "x_transfer": to_tensor(X_transfer),
        "y_transfer": torch.from_numpy(factors["color"] * len(SHAPE_NAMES) + factors["shape"]),
        "n_classes": len(COLOR_NAMES) * len(SHAPE_NAMES),
        "tests": [(to_tensor(t.X_test), t.y_test) for t in task.tests.values()],
    }]


def cifar_data(args, seed: int) -> list[dict]:
    from skad_transfer.data.datasets import load_image_folder

    rng = np.random.default_rng(seed)

    def subset(n_max, n):
        return np.sort(rng.choice(n, n_max, replace=False)) if n_max and n_max < n else np.arange(n)

    X_train, y_train, classes = load_image_folder(args.cifar10, split="train")
    X_test, y_test, _ = load_image_folder(args.cifar10, split="test")
    X_ref, y_ref, ref_classes = load_image_folder(args.cifar100, split="train")
    keep = subset(args.n_test, len(X_test))
    x_test, y_test = to_tensor(X_test[keep]), y_test[keep]
    x_ref = to_tensor(X_ref)
    x_outlier = x_ref[subset(args.n_outlier, len(X_ref))]
    transfer = subset(args.n_transfer, len(X_ref))
    problems = []
    for c in (args.classes or range(len(classes))):
        normal = np.flatnonzero(y_train == c)
        problems.append({
            "name": f"CIFAR-10 '{classes[c]}' vs rest",
            "x_normal": to_tensor(X_train[normal[subset(args.n_normal, len(normal))]]),
            "x_outlier": x_outlier,
            "x_transfer": x_ref[transfer],
            "y_transfer": torch.from_numpy(np.asarray(y_ref[transfer], dtype=np.int64)),
            "n_classes": len(ref_classes),
            "tests": [(x_test, np.where(y_test == c, 1, -1))],
        })
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description="The paper's motivation (Table 1) in miniature: OC-SVM probes on LeNet features")
    parser.add_argument("--tiny", action="store_true", help="a few seconds: tiny data, 1 epoch, 1 seed")
    parser.add_argument("--seeds", type=int, default=None, help="repetitions (default 5; 1 with --tiny)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per training stage (default 15)")
    parser.add_argument("--n-normal", type=int, default=None)
    parser.add_argument("--n-outlier", type=int, default=None)
    parser.add_argument("--n-transfer", type=int, default=None)
    parser.add_argument("--n-test", type=int, default=None, help="per test set (synthetic) / in all (CIFAR)")
    parser.add_argument("--cifar10", default=None, help="CIFAR-10 image-folder zip/folder with train/ and test/")
    parser.add_argument("--cifar100", default=None, help="CIFAR-100 image-folder zip/folder: OE and transfer task")
    parser.add_argument("--classes", type=int, nargs="*", default=None, help="CIFAR-10 normal classes (default all)")
    args = parser.parse_args(argv)
    if args.cifar10 and not args.cifar100:
        parser.error("--cifar10 needs --cifar100: the OE corpus and the transfer task must not contain CIFAR-10")
    tiny = dict(seeds=1, epochs=1, n_normal=64, n_outlier=128, n_transfer=256, n_test=40)
    full = dict(seeds=5, epochs=15, n_normal=1000, n_outlier=2000, n_transfer=4000, n_test=400)
    if args.cifar10:  # None = everything
        full = dict(seeds=5, epochs=15, n_normal=None, n_outlier=None, n_transfer=None, n_test=None)
    for key, value in (tiny if args.tiny else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    started = time.perf_counter()
    results = {(p, layer): [] for p in PARADIGMS for layer in LAYERS}  # one value per seed
    name = ""
    for seed in range(args.seeds):
        problems = cifar_data(args, seed) if args.cifar10 else synthetic_data(args, seed)
        per_problem = {(p, layer): [] for p in PARADIGMS for layer in LAYERS}
        for data in problems:
            name = data["name"] if len(problems) == 1 else f"{len(problems)} one-vs-rest problems"
            for paradigm, net in train_three_ways(data, epochs=args.epochs, seed=seed).items():
                for layer, auc in probe_aucs(net, data).items():
                    per_problem[paradigm, layer].append(auc)
        for key, aucs in per_problem.items():
            results[key].append(float(np.mean(aucs)))

    print(f"OC-SVM probes on LeNet features: {name}; {args.seeds} seed(s), {args.epochs} epoch(s) per stage")
    print("improvement over a random scorer, 100 * (AUC - 0.5) / 0.5 %, mean (std) over seeds [mean AUC]")
    print(f"{'layer':<8}" + "".join(f"{p:>30}" for p in PARADIGMS))
    for layer in LAYERS:
        cells = []
        for paradigm in PARADIGMS:
            aucs = np.asarray(results[paradigm, layer])
            gain = 100 * (aucs - 0.5) / 0.5
            cells.append(f"{gain.mean():.2f} ({gain.std():.2f}) [{aucs.mean():.3f}]")
        print(f"{layer:<8}" + "".join(f"{c:>30}" for c in cells))
    print(f"({time.perf_counter() - started:.1f} s)")

    fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
    for paradigm in PARADIGMS:
        aucs = np.array([results[paradigm, layer] for layer in LAYERS])  # layer x seed
        ax.errorbar(LAYERS, aucs.mean(axis=1), yerr=aucs.std(axis=1), marker="o", capsize=3, label=paradigm)
    ax.axhline(0.5, color="0.7", linestyle=":", label="random scorer")
    ax.set(xlabel="LeNet layer probed", ylabel="OC-SVM probe AUC", title=name)
    ax.legend(fontsize="small")
    plt.show()


if __name__ == "__main__":
    main()
