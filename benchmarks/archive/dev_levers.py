"""Which fine-tuning levers make ADIB beat kNN on its own theta0: the development protocol.

    python benchmarks/archive/dev_levers.py --data DATA_DIR --device cuda --workers 8 --out dev_levers.jsonl

DATA_DIR holds ``cifar10-jpg.zip`` and ``tiny-imagenet-32.zip``. The protocol never touches the
CIFAR-10 test set: per class, training images 0..3999 (position within the class) are the normal
training set and images 4000..4999 of all ten classes (10,000 images) are the evaluation set.
OE = Tiny-ImageNet-32 training images (``--n-oe`` of them). Each lever is one change to the base
recipe (1500 steps of 64 normal + 64 OE images, lr 0.01 dropped 10x at 60% and 80%, squared L2-SP
with alpha 1e-2, BatchNorm in train mode, crop + flip) in a compact training loop of its own that
mirrors :mod:`skad_transfer.engine` (steps drawn with replacement rather than epoch permutations),
so that many levers fit in one short GPU session. Each fit reports the AUC (anomaly = positive) of
the logit, of kNN (k=2) on the fine-tuned pooled features, of kNN on theta0's frozen features, and
of rank sums of the logit with either kNN. The library's defaults were then set from these results
and checked with the library itself (``docs/design.md``); results of the run behind the docs are in
``benchmarks/results/dev_levers/``.

``oejpeg75`` re-encodes the OE corpus once as JPEG quality 75 (the library's ``jpeg_quality=75``
re-encodes normal, OE and scored images alike; see :mod:`skad_transfer.data.harmonize`).

Archived (``benchmarks/README.md``, "Archive"): kept for the record, not maintained; it ran on the
library of 00256d5 (its results came with it in 87dd7f7) and need not run against the current API.
"""
import argparse, io, json, math, os, time, traceback
import numpy as np

def jpeg_all(X, q):
    from PIL import Image
    out = np.empty_like(X)
    for i, im in enumerate(X):
        b = io.BytesIO(); Image.fromarray(im).save(b, "JPEG", quality=q); b.seek(0)
        out[i] = np.asarray(Image.open(b).convert("RGB"))
    return out

def _jp(args):
    return jpeg_all(*args)

def par_jpeg(X, q, pool):
    parts = np.array_split(np.arange(len(X)), 64)
    return np.concatenate(pool.map(_jp, [(np.asarray(X[p]), q) for p in parts]))

CONFIGS = {}
def cfg(name, **kw):
    base = dict(steps=int(os.environ.get("DEV_LEVERS_STEPS", 1500)), lr=0.01, sched="step", alpha=1e-2, bn="train", head_steps=0, data="raw", adapters=False,
                compact=0.0, oe_frac=0.5)
    base.update(kw); CONFIGS[name] = base
for _n, _k in [("base", {}), ("lpft", dict(head_steps=300)), ("oejpeg75", dict(data="oe75")),
               ("bneval", dict(bn="eval")), ("cos", dict(sched="cos")), ("lr0.003", dict(lr=0.003)),
               ("alpha0.1", dict(alpha=0.1)), ("compact", dict(compact=0.1)), ("adra", dict(adapters=True, alpha=0.0)),
               ("lpft_oe75", dict(head_steps=300, data="oe75")), ("lpft_cos_lr0.003", dict(head_steps=300, sched="cos", lr=0.003)),
               ("lpft_alpha0.1", dict(head_steps=300, alpha=0.1)), ("lpft_compact", dict(head_steps=300, compact=0.1)),
               ("steps3000", dict(steps=3000)), ("lr0.03", dict(lr=0.03)), ("alpha1", dict(alpha=1.0)), ("alpha0", dict(alpha=0.0)),
               ("steps500", dict(steps=500)), ("lpft_bneval_cos", dict(head_steps=300, bn="eval", sched="cos")),
               ("adra_lr0.03", dict(adapters=True, alpha=0.0, lr=0.03)), ("lr0.001", dict(lr=0.001))]:
    cfg(_n, **_k)

def fit_one(name, c, seed=0):
    import torch, torch.nn.functional as F
    from skad_transfer.nn.resnet import resnet26
    from skad_transfer.nn.adapters import add_residual_adapters, freeze_for_adaptation
    from skad_transfer.data.augment import random_crop_flip, normalize
    from skad_transfer.weights import resolve_weights
    from skad_transfer import KNNDetector
    from sklearn.metrics import roc_auc_score
    from scipy.stats import rankdata
    k = CONFIGS[name]; dev = torch.device(os.environ.get("DEV_LEVERS_DEVICE", "cuda"))
    D = np.load(f"/tmp/dev_{k['data']}.npz")
    ytr = D["y"]; va = D["va"]; tr = D["tr"]
    rec = resolve_weights("default"); mean, std = rec.mean, rec.std
    g = torch.Generator(device=dev).manual_seed(1000 * seed + c)
    idx = np.flatnonzero(tr & (ytr == c))
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous().to(dev)
    Xn, Xo, Xv = t(D["X"][idx]), t(D["oe"]), t(D["X"][va])
    torch.manual_seed(seed)
    net = resnet26(weights="default", num_classes=1); net.reset_head(1); net.to(dev)
    body = [p for n, p in net.named_parameters() if not n.startswith("linears")]
    anchors = [p.detach().clone() for p in body]
    if k["adapters"]:
        add_residual_adapters(net); params = freeze_for_adaptation(net); net.to(dev)
    else:
        params = list(net.parameters())
    net.to(memory_format=torch.channels_last)
    no = int(round(128 * k["oe_frac"])); nn_ = 128 - no
    tgt = torch.cat([torch.zeros(nn_, device=dev), torch.ones(no, device=dev)])
    def batch():
        ni = torch.randint(0, len(Xn), (nn_,), device=dev, generator=g)
        oi = torch.randint(0, len(Xo), (no,), device=dev, generator=g)
        x = random_crop_flip(torch.cat([Xn[ni], Xo[oi]]), 4, generator=g)
        return normalize(x, mean, std).contiguous(memory_format=torch.channels_last)
    ac = lambda: torch.autocast(dev.type, dtype=torch.bfloat16)
    def set_bn():
        net.train()
        if k["bn"] == "eval":
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d): m.eval()
    t0 = time.time()
    if k["head_steps"]:
        opt = torch.optim.SGD(net.linears.parameters(), lr=0.1, momentum=0.9)
        for s in range(k["head_steps"]):
            x = batch(); net.eval()
            with torch.no_grad(), ac(): f = net.features(x)["pooled"].float()
            loss = F.binary_cross_entropy_with_logits(net.linears(f).squeeze(1), tgt)
            opt.zero_grad(); loss.backward(); opt.step()
    opt = torch.optim.SGD(params, lr=k["lr"], momentum=0.9, weight_decay=1e-4)
    S = k["steps"]
    def lr_at(s):
        if k["sched"] == "step": return k["lr"] * (0.1 ** sum(s >= f * S for f in (0.6, 0.8)))
        w = max(1, S // 20)
        return k["lr"] * (s + 1) / w if s < w else k["lr"] * 0.5 * (1 + math.cos(math.pi * (s - w) / (S - w)))
    for s in range(S):
        for gr in opt.param_groups: gr["lr"] = lr_at(s)
        set_bn(); x = batch()
        with ac():
            feats = net.features(x, ("pooled",))["pooled"]
            logit = net.linears(feats).float().squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logit, tgt)
        if k["compact"]:
            fn = feats[:nn_].float()
            loss = loss + k["compact"] * ((fn - fn.mean(0, keepdim=True)) ** 2).sum(1).mean()
        if k["alpha"]:
            loss = loss + k["alpha"] * sum(((p - q) ** 2).sum() for p, q in zip(body, anchors))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    torch.cuda.synchronize() if dev.type == "cuda" else None; train_s = time.time() - t0
    net.eval()
    @torch.no_grad()
    def run(X, fn):
        outs = []
        for i in range(0, len(X), 1000):
            with ac(): outs.append(fn(normalize(X[i:i+1000], mean, std).contiguous(memory_format=torch.channels_last)).float())
        return torch.cat(outs).cpu().numpy()
    logits = run(Xv, lambda x: net(x)[:, 0])
    Fv = run(Xv, lambda x: net.features(x)["pooled"]); Fn = run(Xn, lambda x: net.features(x)["pooled"])
    F0v, F0n = D["F0"][va], D["F0"][idx]
    yv = ytr[va] != c
    kft = -KNNDetector().fit(Fn).score_samples(Fv); k0 = -KNNDetector().fit(F0n).score_samples(F0v)
    r = dict(config=name, cls=int(c), seed=seed, train_s=train_s, finite=bool(np.isfinite(logits).all()))
    if r["finite"]:
        r.update(logit=roc_auc_score(yv, logits), knn_ft=roc_auc_score(yv, kft), knn0=roc_auc_score(yv, k0),
                 logit_knn0=roc_auc_score(yv, rankdata(logits) + rankdata(k0)),
                 logit_knnft=roc_auc_score(yv, rankdata(logits) + rankdata(kft)))
    return r

def worker(item):
    try:
        return fit_one(*item)
    except Exception:
        return dict(config=item[0], cls=item[1], error=traceback.format_exc()[-2000:])

def prepare(data_dir, n_oe):
    import multiprocessing as mp
    from skad_transfer.data.datasets import load_image_folder, load_tiny_imagenet
    from skad_transfer import LayerFeatures
    X, y, _ = load_image_folder(f"{data_dir}/cifar10-jpg.zip", split="train", n_jobs=16)
    y = np.asarray(y); pos = np.zeros(len(y), int)
    for c in range(10):
        i = np.flatnonzero(y == c); pos[i] = np.arange(len(i))
    tr, va = pos < 4000, pos >= 4000
    oe, _, _ = load_tiny_imagenet(f"{data_dir}/tiny-imagenet-32.zip", split="train", n_jobs=16)
    X, oe = np.asarray(X), np.asarray(oe)[:n_oe]
    F0 = LayerFeatures(device=os.environ.get("DEV_LEVERS_DEVICE", "cuda")).fit(X[:4]).transform(X)
    np.savez("/tmp/dev_raw.npz", X=X, y=y, tr=tr, va=va, oe=oe, F0=F0)
    with mp.get_context("fork").Pool(16) as pool:
        np.savez("/tmp/dev_oe75.npz", X=X, y=y, tr=tr, va=va, oe=par_jpeg(oe, 75, pool), F0=F0)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="folder with cifar10-jpg.zip and tiny-imagenet-32.zip")
    p.add_argument("--device", default="cuda"); p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--out", default="dev_levers.jsonl"); p.add_argument("--classes", type=int, nargs="+", default=[0, 2, 3, 5, 8])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS)); p.add_argument("--workers", type=int, default=6)
    p.add_argument("--deadline", type=float, default=300); p.add_argument("--n_oe", type=int, default=100000)
    p.add_argument("--skip_prepare", action="store_true")
    a = p.parse_args()
    # Workers are spawned processes: they read these (and the prepared arrays under /tmp).
    os.environ["DEV_LEVERS_DEVICE"], os.environ["DEV_LEVERS_STEPS"] = a.device, str(a.steps)
    t0 = time.time()
    if not a.skip_prepare: prepare(a.data, a.n_oe)
    print("prepared", round(time.time() - t0, 1), flush=True)
    import multiprocessing as mp
    items = [(n, c) for n in a.configs for c in a.classes]
    with mp.get_context("spawn").Pool(a.workers) as pool, open(a.out, "a") as f:
        pending = [pool.apply_async(worker, (it,)) for it in items]
        for res in pending:
            left = a.deadline - (time.time() - t0)
            try:
                r = res.get(timeout=max(1, left))
            except mp.TimeoutError:
                print("deadline reached", flush=True); pool.terminate(); break
            f.write(json.dumps(r) + "\n"); f.flush()
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "error"}, r.get("error", "")[-300:], flush=True)
    print("total", round(time.time() - t0, 1))
