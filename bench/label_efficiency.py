"""Does diverse / active sampling save labels? (issue 6, item 3) Fashion-MNIST embedded by picsift's offline model.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/label_efficiency.py [--train 10000] [--test 2000] [--seeds 5]
                                                                  [--plot docs/images/label_efficiency.png]

Data: a seeded subset of Fashion-MNIST (``--train`` images of the official train split form the unlabelled
pool, ``--test`` images of the test split measure accuracy), inverted to a dark object on white as the model
was trained, embedded with picsift's own ``picsift-offline`` model through :class:`picsift.embedding.Embedder`
(the path ``Library.update`` takes) and cached in ``~/.cache/picsift/bench``. The model never saw the test split.

Protocol: each strategy grows a labelled set round by round to the budgets in ``--budgets``; after each round a
logistic regression (``C=10``, as :class:`picsift.analysis.active_learning.ActiveLearningLoop` uses) is fitted on the
labelled embeddings and scored on the test images. Averaged over ``--seeds`` seeds (the pool is the same; the
seed drives the strategy). Strategies:

* ``uniform``: i.i.d. random labels, the baseline (no picsift);
* ``random``, ``centroids``, ``kcenter``, ``typical``: :func:`picsift.analysis.sampling.sample_positions`, with the
  images labelled so far excluded (counted as covered);
* ``uncertain``: top-margin-uncertainty only (no diversity), after a ``typical`` first round;
* ``uncert+div``: :class:`~picsift.analysis.active_learning.ActiveLearningLoop` with its defaults (margin uncertainty,
  ``typical`` among the ``10 * batch`` most uncertain: one image per cluster of the pool), after a ``typical``
  first round.

Then the same on an imbalanced pool (``--rare`` class cut to 1% of the pool): labels until the first rare
image is labelled, rare images among the labels, and the test recall of the rare class.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# label counts, not speed, are measured here: one BLAS thread avoids spinning threads on a shared machine
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "training"))

import numpy as np  # noqa: E402
from common import cache_dir, header, table  # noqa: E402
from training_data import read_idx  # noqa: E402

from picsift.analysis.active_learning import ActiveLearningLoop, uncertainty_scores  # noqa: E402
from picsift.analysis.sampling import sample_positions  # noqa: E402

CLASSES = ["t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
FMNIST = [Path("/usr/share/datasets/fashion-mnist"), Path.home() / ".cache/picsift/training/fashion-mnist"]
STRATEGIES = ["uniform", "random", "centroids", "kcenter", "typical", "uncertain", "uncert+div"]
C = 10.0


def fmnist_root() -> Path:
    for root in FMNIST:
        if (root / "t10k-labels-idx1-ubyte.gz").is_file():
            return root
    raise SystemExit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist (or training/fetch_data.py)")


def embedded(n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train vectors, train labels, test vectors, test labels), embedded once and cached."""
    from picsift.embedding.spec import OFFLINE_MODEL, parse_model_spec

    identity = parse_model_spec(OFFLINE_MODEL).identity()
    tag = "".join(c if c.isalnum() else "-" for c in identity)[-40:]
    path = cache_dir() / f"fmnist-{n_train}-{n_test}-{tag}.npz"
    if path.exists():
        data = np.load(path)
        return data["xtr"], data["ytr"], data["xte"], data["yte"]
    from PIL import Image

    from picsift.embedding import Embedder

    root = fmnist_root()
    embedder = Embedder(OFFLINE_MODEL, device="cpu", batch_size=256)
    out = []
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
        pick = np.sort(np.random.default_rng(0).choice(len(labels), n, replace=False))
        start = time.perf_counter()
        pils = [Image.fromarray(255 - images[i]).convert("RGB") for i in pick]  # dark object on white
        vectors = np.concatenate([embedder.embed_images(pils[s : s + 1024]) for s in range(0, len(pils), 1024)])
        print(f"# embedded {n} {prefix} images in {time.perf_counter() - start:.0f} s", flush=True)
        out += [vectors.astype(np.float32), labels[pick].astype(np.int64)]
    np.savez(path, xtr=out[0], ytr=out[1], xte=out[2], yte=out[3])
    return out[0], out[1], out[2], out[3]


def fit_score(x: np.ndarray, y: np.ndarray, labelled: np.ndarray, xte: np.ndarray, yte: np.ndarray,
              rare: int | None = None) -> tuple[float, float, np.ndarray | None]:
    """Test accuracy, rare-class recall, and the pool's class probabilities (None with one class)."""
    from sklearn.linear_model import LogisticRegression

    classes = np.unique(y[labelled])
    if len(classes) < 2:
        pred = np.full(len(yte), classes[0] if len(classes) else -1)
        return float(np.mean(pred == yte)), float(np.mean(pred[yte == rare] == rare)) if rare is not None else 0, None
    model = LogisticRegression(C=C, max_iter=2000).fit(x[labelled], y[labelled])
    pred = model.predict(xte)
    recall = float(np.mean(pred[yte == rare] == rare)) if rare is not None else float("nan")
    return float(np.mean(pred == yte)), recall, model.predict_proba(x)


def run(strategy: str, x: np.ndarray, y: np.ndarray, xte: np.ndarray, yte: np.ndarray, budgets: list[int],
        seed: int, rare: int | None = None) -> dict[str, list[float]]:
    """Grow the labelled set to each budget with ``strategy``; accuracy (and rare recall) after each round."""
    rng = np.random.default_rng(1000 + seed)
    labelled = np.zeros(len(x), bool)
    order: list[int] = []
    accuracy, recall = [], []
    probabilities = None
    loop = ActiveLearningLoop(np.arange(len(x)).astype(str), x, C=C, seed=seed)  # its defaults: typical
    for round_, budget in enumerate(budgets):
        n = budget - int(labelled.sum())
        if strategy == "uniform":
            picked = rng.choice(np.flatnonzero(~labelled), n, replace=False)
        elif strategy in ("uncertain", "uncert+div") and probabilities is not None:
            if strategy == "uncertain":
                scores = np.where(labelled, -np.inf, uncertainty_scores(probabilities))
                picked = np.argsort(-scores, kind="stable")[:n]
            else:
                loop.labels = {str(i): str(y[i]) for i in np.flatnonzero(labelled)}
                loop._model = None
                picked = loop.next_batch(n)["id"].astype(int).to_numpy()
        else:
            method = "typical" if strategy in ("uncertain", "uncert+div") else strategy
            picked = sample_positions(x, n, method=method, seed=seed + round_, exclude=labelled)
        assert not labelled[picked].any() and len(picked) == n, (strategy, budget)
        labelled[picked] = True
        order.extend(int(i) for i in picked)
        acc, rec, probabilities = fit_score(x, y, labelled, xte, yte, rare)
        accuracy.append(acc)
        recall.append(rec)
    first_rare = next((i + 1 for i, p in enumerate(order) if y[p] == rare), float("nan")) if rare is not None else 0
    return {"accuracy": accuracy, "recall": recall, "first_rare": [float(first_rare)],
            "rare_labelled": [float(np.sum(y[order] == rare))] if rare is not None else [0.0]}


def labels_to_reach(budgets: list[int], curve: np.ndarray, target: float) -> float:
    """Labels at which the mean curve first reaches ``target`` (linear between budgets; nan if never)."""
    for i, value in enumerate(curve):
        if value >= target:
            if i == 0:
                return float(budgets[0])
            lo, hi = curve[i - 1], value
            return float(budgets[i - 1] + (budgets[i] - budgets[i - 1]) * (target - lo) / (hi - lo))
    return float("nan")


def experiment(name: str, strategies: list[str], x: np.ndarray, y: np.ndarray, xte: np.ndarray, yte: np.ndarray,
               budgets: list[int], seeds: int, rare: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    results: dict[str, dict[str, np.ndarray]] = {}
    for strategy in strategies:
        start = time.perf_counter()
        runs = [run(strategy, x, y, xte, yte, budgets, seed, rare) for seed in range(seeds)]
        results[strategy] = {key: np.array([r[key] for r in runs]) for key in runs[0]}
        print(f"# {name}: {strategy} done in {time.perf_counter() - start:.0f} s", flush=True)
    return results


def plot(path: Path, budgets: list[int], results: dict[str, dict[str, np.ndarray]], full: float, title: str,
         imbalanced: dict[str, dict[str, np.ndarray]] | None, rare_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if imbalanced else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 4.4), squeeze=False)
    styles: dict[str, Callable[[], dict[str, object]]] = {}
    for ax, (data, key, label) in zip(axes[0], [(results, "accuracy", "test accuracy"),
                                                 (imbalanced, "recall", f"test recall of '{rare_name}' (1% of pool)")],
                                      strict=False):
        assert data is not None
        for strategy, r in data.items():
            mean, sd = r[key].mean(axis=0), r[key].std(axis=0)
            dashed = strategy == "uniform"
            (line,) = ax.plot(budgets, mean, marker="o", ms=3, label=strategy, ls="--" if dashed else "-",
                              color="black" if dashed else None, **styles.get(strategy, dict)())
            ax.fill_between(budgets, np.clip(mean - sd, 0, 1), np.clip(mean + sd, 0, 1), alpha=0.08,
                            color=line.get_color())
        if key == "accuracy":
            ax.axhline(full, color="grey", lw=0.8, ls=":")
            ax.text(budgets[0], full - 0.005, f"{full:.3f} with every label", ha="left", va="top", fontsize=8,
                    color="grey")
        ax.set_xscale("log")
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.set_xlabel("labelled images")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].set_title(title, fontsize=10)
    if imbalanced:
        axes[0][1].set_title("imbalanced pool", fontsize=10)
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"# plot saved to {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=10_000, help="unlabelled pool size (train split subset)")
    ap.add_argument("--test", type=int, default=2_000, help="test images")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budgets", default="10,20,40,60,100,150,200", help="labelled images after each round")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--rare", default="bag", choices=CLASSES, help="class cut to 1%% in the imbalanced pool")
    ap.add_argument("--skip-imbalanced", action="store_true")
    ap.add_argument("--plot", default=str(REPO / "docs/images/label_efficiency.png"))
    ap.add_argument("--embed-only", action="store_true", help="only embed (and cache) the images")
    args = ap.parse_args(argv)
    header("label efficiency of sampling strategies (Fashion-MNIST, picsift-offline embeddings)",
           sys.argv if argv is None else ["bench/label_efficiency.py", *argv])
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    x, y, xte, yte = embedded(args.train, args.test)
    if args.embed_only:
        return 0
    budgets = [int(b) for b in args.budgets.split(",")]
    strategies = args.strategies.split(",")
    full = fit_score(x, y, np.ones(len(x), bool), xte, yte)[0]
    print(f"pool {len(x)} images, test {len(xte)}; logistic regression on all {len(x)} labels: accuracy {full:.3f}\n")

    results = experiment("balanced", strategies, x, y, xte, yte, budgets, args.seeds)
    print(f"\n## Test accuracy vs labelled images (mean ± sd over {args.seeds} seeds)\n")
    rows = [[s, *[f"{m:.3f} ± {d:.3f}" for m, d in zip(r["accuracy"].mean(0), r["accuracy"].std(0), strict=True)]]
            for s, r in results.items()]
    print(table(rows, ["strategy", *[str(b) for b in budgets]]))
    targets = [round(full * f, 3) for f in (0.85, 0.9, 0.95)]
    print(f"\n## Labels needed to reach a test accuracy (mean curve, interpolated; '-': not within {budgets[-1]})\n")
    rows = [[s, *[labels_to_reach(budgets, r["accuracy"].mean(0), t) for t in targets]] for s, r in results.items()]
    base = {t: labels_to_reach(budgets, results["uniform"]["accuracy"].mean(0), t) for t in targets} \
        if "uniform" in results else {}
    print(table(rows, ["strategy", *[f"acc {t:.3f} ({f:.0%} of all-label)" for t, f in
                                      zip(targets, (0.85, 0.9, 0.95), strict=True)]]))
    if base:
        print("\nuniform baseline labels per target: " + ", ".join(f"{t:.3f}: {v:.0f}" for t, v in base.items()))

    imbalanced = None
    rare = CLASSES.index(args.rare)
    if not args.skip_imbalanced:
        keep = np.flatnonzero(y != rare)
        rare_rows = np.flatnonzero(y == rare)
        n_rare = max(1, round(0.01 * len(keep) / 0.99))
        rows_ = np.sort(np.concatenate([keep, np.random.default_rng(0).choice(rare_rows, n_rare, replace=False)]))
        xi, yi = x[rows_], y[rows_]
        print(f"\n## Imbalanced pool: {len(xi)} images, '{args.rare}' cut to {n_rare} (1%)\n", flush=True)
        imbalanced = experiment("imbalanced", strategies, xi, yi, xte, yte, budgets, args.seeds, rare)
        rows = []
        for s, r in imbalanced.items():
            found = r["first_rare"][:, 0]
            rows.append([s, f"{np.nanmean(found):.0f}" if np.isfinite(found).any() else "-",
                         f"{np.isfinite(found).mean():.0%}", f"{r['rare_labelled'].mean():.1f}",
                         f"{r['recall'][:, -1].mean():.3f}", f"{r['accuracy'][:, -1].mean():.3f}"])
        print(table(rows, ["strategy", "labels to 1st rare (mean of runs that found one)", "runs finding one",
                           f"rare among {budgets[-1]} labels", f"rare test recall at {budgets[-1]}",
                           f"test accuracy at {budgets[-1]}"]))
    if args.plot:
        plot(Path(args.plot), budgets, results, full,
             f"Fashion-MNIST, picsift-offline embeddings, pool {len(x)}, {args.seeds} seeds", imbalanced, args.rare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
