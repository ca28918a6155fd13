"""Class probabilities for the label checks, from two signals, and cleanlab turning them into issues and scores.

**Neighbours** (:func:`neighbour_probabilities`): each labelled image's class distribution among its
:data:`VOTES` nearest *labelled* neighbours in the neighbour graph, weighted by similarity, smoothed towards
uniform by :data:`SMOOTHING` votes. The image's own label never counts (leave-one-out), so the probabilities
are out-of-sample, as confident learning needs.

**Prompts** (:func:`prompt_probabilities`): each class name made into words and put in :data:`PROMPTS` (an
ensemble: the mean of their unit text vectors); each image's similarity to each class, standardised per class
over the library's own images (a class whose prompt matches everything a little better is not favoured), then a
softmax.

**Combined** (:func:`combine`): a product of experts, ``p ∝ p_neighbours^(1-w) · p_prompts^(w / T)``. The weight
``w`` and temperature ``T`` are chosen on the library itself, by the likelihood of the given labels (both signals
are out-of-sample), trimmed: the :data:`TRIM` worst-fit labels, where the mistakes are, do not vote. A model whose
prompts mean nothing (random weights, or classes named "a", "b") gets ``w`` near 0, a strong zero-shot model on a
sparse graph gets more. bench/label_mistakes.py measured this against each signal alone and the untrimmed fit:
the trimmed fit is as good or better on 10 of its 12 settings (stamps and Fashion-MNIST, uniform and confusable
flips at 5/10/20%), most on flips to a confusable class (Fashion-MNIST 20%: precision@n 0.70 -> 0.80).

**cleanlab** (:func:`cleanlab_issues`) then flags the issues (confident learning, ``find_label_issues``) and
scores every label (``get_label_quality_scores``); picsift's score is ``1 - quality``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Labelled neighbours that vote on an image's class.
VOTES = 10
#: Pseudo-votes spread evenly over the classes (no class ever gets probability 0).
SMOOTHING = 0.5
#: The prompt ensemble; ``{}`` is the class name in words.
PROMPTS = ("a photo of {}.", "a photo of a {}.", "a picture of {}.", "a drawing of {}.", "an image of {}.", "{}")
#: Grid for the mixing weight of the prompts and their temperature.
WEIGHTS = tuple(np.round(np.linspace(0, 1, 11), 2))
TEMPERATURES = (0.25, 0.5, 1.0, 2.0)
#: The share of worst-fit labels left out of the likelihood that chooses the mixing (robust to the mistakes).
TRIM = 0.2
#: CLIP's logit scale: plain zero-shot logits are this times the cosine (before the temperature).
PLAIN_SCALE = 100.0
#: The mixing is chosen on at most this many labelled images (seeded), and applied in chunks of CHUNK rows.
FIT_ROWS = 20_000
CHUNK = 50_000
#: cleanlab's ranking of label quality (``get_label_quality_scores(method=...)``).
QUALITY_METHOD = "self_confidence"


@dataclass
class Votes:
    """Neighbour probabilities ``(n, C)``, and for the reasons: per image the count of voting neighbours and of
    votes per class."""

    probabilities: np.ndarray
    voters: np.ndarray
    counts: np.ndarray


def neighbour_probabilities(positions: np.ndarray, similarities: np.ndarray, rows: np.ndarray,
                            labels: np.ndarray, classes: int, votes: int = VOTES) -> Votes:
    """Leave-one-out class probabilities of the images at graph ``rows`` with class codes ``labels``.

    ``positions``/``similarities``: the whole neighbour graph. Only neighbours that are labelled (at ``rows``)
    vote; the first ``votes`` of them, each with weight ``max(similarity, 0)``. float32 probabilities and uint8
    counts (``votes`` <= 255): 1M images x 200 classes take 0.8 GB and 0.2 GB, not 1.6 GB each.
    """
    if not 1 <= votes <= 255:
        raise ValueError(f"votes={votes!r}; valid: 1 to 255")
    label_of = np.full(len(positions), -1, np.int64)
    label_of[rows] = labels
    near = positions[rows]
    near_labels = np.where(near >= 0, label_of[np.maximum(near, 0)], -1)
    voting = near_labels >= 0
    voting &= np.cumsum(voting, axis=1) <= votes
    probabilities = np.zeros((len(rows), classes), np.float32)
    counts = np.zeros((len(rows), classes), np.uint8)
    row, column = np.nonzero(voting)
    weights = np.maximum(np.asarray(similarities[rows[row], column], np.float32), 0.0)
    np.add.at(probabilities, (row, near_labels[row, column]), weights)
    np.add.at(counts, (row, near_labels[row, column]), 1)
    total = probabilities.sum(axis=1, keepdims=True) + np.float32(SMOOTHING)
    probabilities += np.float32(SMOOTHING / classes)
    probabilities /= total
    return Votes(probabilities, voting.sum(axis=1), counts)


def class_text_vectors(names: list[str], embed_text: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """One unit vector per class: the mean of its prompts' text vectors (``names`` already in words)."""
    prompts = [template.format(name) for name in names for template in PROMPTS]
    vectors = np.asarray(embed_text(prompts), np.float32).reshape(len(names), len(PROMPTS), -1).mean(axis=1)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def standardised_prompt_scores(image_vectors: np.ndarray, text_vectors: np.ndarray, reference: np.ndarray
                               ) -> np.ndarray:
    """Similarity of each image to each class, standardised per class by its mean and spread over ``reference``
    (the library's images, or a sample of them)."""
    scores = image_vectors @ text_vectors.T
    base = reference @ text_vectors.T
    return (scores - base.mean(axis=0)) / np.maximum(base.std(axis=0), 1e-6)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@dataclass
class Combined:
    probabilities: np.ndarray
    weight: float
    temperature: float
    log_likelihood: float
    prompts: str = "calibrated"


def combine(neighbours: np.ndarray, prompt_scores: np.ndarray | None, labels: np.ndarray,
            fit_rows: int = FIT_ROWS, seed: int = 0, plain_scores: np.ndarray | None = None) -> Combined:
    """The product of experts whose weight and temperature give the given ``labels`` the highest likelihood
    (the mean log-probability of all but the :data:`TRIM` worst-fit labels), chosen on at most ``fit_rows``
    seeded rows and then applied to every row in chunks (float32: no n x C float64 matrix).

    ``plain_scores`` (zero-shot logits, :data:`PLAIN_SCALE` x cosine), when given, compete with the calibrated
    ``prompt_scores`` in the same fit. The label checks do not pass them: bench/label_mistakes.py measured
    (``picsift+plain``) that the choice wins every OpenClipart row (confusable 20%: AUROC 0.919 -> 0.963) but
    loses Fashion-MNIST and emoji rows (Fashion-MNIST confusable 5%: 0.969 -> 0.945), and choosing the signal
    by the untrimmed likelihood instead loses the emoji confusable rows."""
    n = len(labels)
    if prompt_scores is None:
        fits = np.log(neighbours[np.arange(n), labels].astype(np.float64))
        return Combined(neighbours, 0.0, 1.0, float(fits.mean()), "none")
    candidates = {"calibrated": prompt_scores, **({"plain": plain_scores} if plain_scores is not None else {})}
    fit = np.arange(n) if n <= fit_rows else np.sort(np.random.default_rng(seed).choice(n, fit_rows, replace=False))
    log_n = np.log(neighbours[fit].astype(np.float64))
    best: tuple[float, float, float, str] | None = None
    for name, scores in candidates.items():
        for temperature in TEMPERATURES:
            log_p = np.log(softmax(scores[fit].astype(np.float64) / temperature))
            for weight in WEIGHTS:
                mixed = softmax((1 - weight) * log_n + weight * log_p)
                fits = np.sort(np.log(mixed[np.arange(len(fit)), labels[fit]]))
                likelihood = float(fits[int(TRIM * len(fits)) :].mean())
                if best is None or likelihood > best[2] + 1e-12:
                    best = (float(weight), temperature, likelihood, name)
    assert best is not None
    weight, temperature, likelihood, name = best
    chosen = candidates[name]
    # applied to every row in float32 (the choice above is float64 on a sample): at 1M x 200 classes the
    # float64 exp/log passes were the step's largest cost, for differences near float32's rounding
    mixed = np.empty(neighbours.shape, np.float32)
    for start in range(0, n, CHUNK):
        part = slice(start, start + CHUNK)
        logits = chosen[part].astype(np.float32) / np.float32(temperature)
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))  # log softmax, in place of log(softmax)
        mixed[part] = softmax(np.float32(1 - weight) * np.log(neighbours[part].astype(np.float32))
                              + np.float32(weight) * log_p)
    return Combined(mixed, weight, temperature, likelihood, name)


def cleanlab_issues(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's verdict: a boolean issue mask (confident learning) and a score in 0..1 (1 - label quality)."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError as e:
        raise ImportError('label checks need cleanlab: pip install "picsift[health]"') from e
    import warnings

    with warnings.catch_warnings():  # small classes: cleanlab warns, and still answers
        warnings.simplefilter("ignore")
        # one process: cleanlab's pool would hold the n x C probabilities once more per worker
        issues = find_label_issues(labels, probabilities, filter_by="prune_by_noise_rate", n_jobs=1)
        quality = get_label_quality_scores(labels, probabilities, method=QUALITY_METHOD)
    return np.asarray(issues, bool), np.clip(1.0 - np.asarray(quality, np.float64), 0.0, 1.0)
