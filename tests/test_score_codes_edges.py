"""The histogram from one-byte codes stays within its target of the exact one: the scores near a bin edge are
rescored exactly (picsift.core.codes.near_edges), straight from the float16 store (exact_float16)."""

from __future__ import annotations

import numpy as np
import pytest

import picsift.core.store as store_module
from picsift.core.codes import TARGET_PER_10K, StoreCodes, exact_float16, near_edge_rows, near_edges
from picsift.core.codes_format import FLAG, encode, fit


def test_scores_read_straight_from_the_float16_store_are_the_exact_ones() -> None:
    rng = np.random.default_rng(2)
    matrix = (rng.normal(size=(5000, 96)) / 10).astype(np.float16)
    matrix[7, :40] = np.float16(3e-6)  # subnormal float16s
    matrix[8] = 0  # a zero row scores 0, as the store's exact path scores it
    matrix[9, 0] = np.float16(-60000)  # near float16's largest magnitude
    query = rng.normal(size=96).astype(np.float32)
    query /= np.linalg.norm(query)
    rows = np.concatenate([[9, 8, 7, 7], rng.integers(0, 5000, 3000)])  # any order, repeats
    exact = store_module._float32_rows(matrix, rows) @ query
    got = exact_float16(matrix, rows, query)
    assert got.dtype == np.float32 and got.shape == (len(rows),)
    assert np.abs(got - exact).max() <= 96 * 2.0**-24  # the store's sum_error: another order of sums
    assert got[1] == 0 and exact_float16(matrix, np.zeros(0, np.int64), query).shape == (0,)


def histogram_error(scores: np.ndarray, exact: np.ndarray) -> float:
    """The largest bin difference per 10,000 scores, 50 bins over each one's own range (as the app bins them)."""
    return float(np.abs(np.histogram(scores, 50)[0] - np.histogram(exact, 50)[0]).max() * 10_000 / len(exact))


def test_rescoring_the_scores_near_the_edges_keeps_every_bin_within_the_target() -> None:
    """Scores with a peak, a tight clump and a long tail, each off by a random error like the codes' (a sum of many
    uniform roundings): the scores near_edges picks, rescored exactly, bring every bin within the target, which
    the scores as scanned miss; a large store rescores a smaller share of its scores than a small one."""
    typical = 3.7e-4
    shares = {}
    for n in (20_000, 400_000):
        rng = np.random.default_rng(n)
        errors, shares[n] = [], []
        for _ in range(4):
            exact = np.concatenate([rng.normal(0.2, 0.03, n * 7 // 10), rng.normal(0.26, 0.004, n // 10),
                                    0.15 + rng.gamma(2.0, 0.03, n - n * 7 // 10 - n // 10)]).astype(np.float32)
            rounding = rng.uniform(-0.5, 0.5, (n, 24)).sum(axis=1) / np.sqrt(24 / 12) * typical
            coarse = (exact + rounding).astype(np.float32)
            ends = (coarse <= coarse.min() + 0.01) | (coarse >= coarse.max() - 0.01)  # exact_top makes them exact
            coarse[ends] = exact[ends]
            near = near_edges(coarse, 50, typical)
            refined = np.where(near, exact, coarse)
            errors.append((histogram_error(coarse, exact), histogram_error(refined, exact)))
            shares[n].append(near.mean())
        assert max(after for _, after in errors) <= TARGET_PER_10K, n
        assert min(before for before, _ in errors) > TARGET_PER_10K, n  # without the rescoring, the target is missed
    assert max(shares[400_000]) < 0.15 and max(shares[400_000]) < min(shares[20_000]) < 0.3
    assert not near_edges(coarse, 50, 0.0).any() and not near_edges(np.full(10, 0.5, np.float32), 50, 1e-3).any()


def test_the_rows_near_an_edge_are_the_marked_ones_but_those_skipped() -> None:
    """exact_top takes the positions near_edge_rows finds in one parallel pass: the scores near_edges marks, in
    order, without those already exact (skipped), whatever the number of scores (fewer than the kernel's blocks
    too)."""
    rng = np.random.default_rng(3)
    for n in (7, 63, 1000, 400_001):
        scores = np.concatenate([rng.normal(0.2, 0.03, n - n // 5), rng.gamma(2.0, 0.03, n // 5)]).astype(np.float32)
        scores[rng.integers(0, n, max(1, n // 1000))] = scores[0]  # ties
        skip = rng.choice(n, n // 3, replace=False)
        for typical in (1e-4, 1e-3, 0.05):
            marked = near_edges(scores, 50, typical)
            want = np.flatnonzero(marked & ~np.isin(np.arange(n), skip))
            assert near_edge_rows(scores, 50, typical, skip=skip).tolist() == want.tolist(), (n, typical)
            assert near_edge_rows(scores, 50, typical).tolist() == np.flatnonzero(marked).tolist()
            assert 0 < marked.sum() < n or n < 100 or typical < 1e-3
    assert near_edge_rows(np.full(10, 0.5, np.float32), 50, 1e-3).dtype == np.int64


def test_a_scan_of_several_queries_gives_each_query_scores_within_the_bound_flagged_rows_exact() -> None:
    """Several queries at once (combine="max") write one column each; flagged rows (unlike the fitted ones) are
    scored from their vectors, kept after the first scan, at every later one."""
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(3000, 64)).astype(np.float32)
    vectors[:, 3] += 5.0
    vectors[2900:] = rng.normal(size=(100, 64)) * 3  # unlike the 2,000 rows the header is fitted on
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    header = fit(vectors[:2000], 2000)
    codes = StoreCodes(encode(vectors, header), header, lambda rows: vectors[rows])
    flagged = codes.codes[:, 0] == FLAG
    assert flagged[2900:].sum() > 50 and not flagged[:2000].any()
    queries = np.concatenate([vectors[[5, 2950]], rng.normal(size=(1, 64)).astype(np.float32)])
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rows = np.arange(3000)
    for _ in range(2):  # the second scan uses the flagged rows' kept vectors
        together = codes.scan(queries, rows)
        for j, query in enumerate(queries):
            np.testing.assert_allclose(together[:, j], codes.scan(query[None], rows)[:, 0], atol=64 * 2.0**-24)
            exact = vectors @ query
            assert np.abs(together[:, j] - exact).max() <= header.error
            np.testing.assert_allclose(together[flagged, j], exact[flagged], atol=1e-6)


def test_a_scope_scattered_over_the_codes_scores_as_the_whole_store_does() -> None:
    """A scope's rows (a tenth of the store, in any order, flagged rows among them) are scanned with their codes asked
    for ahead of time: each gets the very score the scan of every row gives it, NaN-free (flagged ones exact)."""
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(20_000, 96)).astype(np.float32)
    vectors[19_000:] = rng.normal(size=(1000, 96)) * 4  # unlike the rows the header is fitted on: flagged
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    header = fit(vectors[:10_000], 10_000)
    codes = StoreCodes(encode(vectors, header), header, lambda rows: vectors[rows])
    query = vectors[7][None]
    whole = codes.scan(query, np.arange(20_000))[:, 0]
    scope = rng.choice(20_000, 2000, replace=False)  # under half the store: the prefetching path
    assert (codes.codes[scope, 0] == FLAG).any()
    scattered = codes.scan(query, scope)[:, 0]
    assert not np.isnan(scattered).any()
    np.testing.assert_array_equal(scattered, whole[scope])


def test_the_histogram_counts_what_numpy_counts_scores_on_an_edge_included() -> None:
    """picsift's histogram (the score range widget's, ImageSet.histogram) gives numpy's counts and edges: a score on
    an edge, or one float step either side of it, lands in numpy's bin; values outside a given range and NaN are
    left out as numpy leaves them, and numpy's errors come through."""
    from picsift.query.imageset import histogram

    rng = np.random.default_rng(5)
    for dtype in (np.float32, np.float64):
        scores = (rng.normal(size=50_000) * 0.05 + 0.2).astype(dtype)
        edges = np.histogram_bin_edges(scores, 50).astype(dtype)
        on_edges = np.concatenate([scores, edges, np.nextafter(edges, dtype(-1)), np.nextafter(edges, dtype(2))])
        for values, bins, span in ((scores, 50, None), (on_edges, 50, None), (on_edges, 7, None), (scores, 1, None),
                                   (np.append(on_edges, np.nan), 50, (0.1, 0.25)), (np.full(9, 0.3, dtype), 50, None),
                                   (np.zeros(0, dtype), 5, (0.0, 1.0))):
            counts, got_edges = histogram(values, bins, span)
            want_counts, want_edges = np.histogram(values, bins, span)
            assert counts.dtype == want_counts.dtype and (counts == want_counts).all(), (dtype, bins, span)
            assert got_edges.dtype == want_edges.dtype and (got_edges == want_edges).all()
    assert histogram(np.arange(10), 3)[0].tolist() == np.histogram(np.arange(10), 3)[0].tolist() == [3, 3, 4]
    with pytest.raises(ValueError, match="not finite"):
        histogram(np.array([np.nan, 0.5], np.float32))


def test_the_best_of_a_million_scores_are_those_a_full_sort_gives() -> None:
    """select() picks a search's results from every score: of many, from a threshold a sample suggests (all of them
    partitioned when the sample misjudges). Whatever the scores (a peak, half of them left out as -inf the way
    exclusions are, heavy ties, all equal, mostly NaN), its picks are a full sort's: best first, ties in store
    order, NaN last."""
    from picsift.query.search import select

    rng = np.random.default_rng(9)
    peak = (rng.normal(size=1_000_000) * 0.03 + 0.2).astype(np.float32)
    cases = {"peak": peak, "half excluded": np.where(rng.random(len(peak)) < 0.5, peak, -np.inf).astype(np.float32),
             "ties": np.round(rng.normal(size=len(peak)), 1).astype(np.float32),
             "all equal": np.full(len(peak), 0.5, np.float32), "few": peak[:70_000],
             "NaN, ranked last": np.where(rng.random(len(peak)) < 0.9, np.nan, peak).astype(np.float32)}
    for name, scores in cases.items():
        ranked = np.where(np.isnan(scores), -np.inf, scores)
        order = np.lexsort((np.arange(len(scores)), -ranked))  # a full sort: best first, ties in store order
        for limit in (0, 1, 100, 3000, 60_000):
            got = select(scores, limit, None, None)
            assert got.tolist() == order[:limit].tolist(), (name, limit)
        assert select(scores, 100, 0.25, None).tolist() == order[:100][scores[order[:100]] >= 0.25].tolist()


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 5_000, 100_003])
def test_the_range_and_the_rows_a_search_rescores_are_numpys_in_one_pass(n: int) -> None:
    """exact_top finds the scores' range and the rows it rescores (the results' band and both ends) in two compiled
    passes (score_range, rows_within): the same as numpy's min, max and masks, for any count of scores."""
    from picsift.core.codes_kernel import LOCK, rows_within, score_range

    rng = np.random.default_rng(n)
    scores = rng.normal(0.2, 0.05, n).astype(np.float32)
    if n > 10:
        scores[rng.integers(0, n, 5)] = scores[0]  # ties
    with LOCK:
        low, high = score_range(scores)
        if n:
            assert (low, high) == (float(scores.min()), float(scores.max()))
            for lower, upper, below, above in [(0.25, 0.3, low + 0.01, high - 0.01), (-np.inf, np.inf, -1.0, 2.0),
                                               (0.3, 0.2, low, high), (0.21, np.inf, -np.inf, np.inf)]:
                want = np.flatnonzero(((scores >= lower) & (scores <= upper)) | (scores <= below) | (scores >= above))
                got = rows_within(scores, lower, upper, below, above)
                assert got.dtype == np.int64 and got.tolist() == want.tolist()
        else:
            assert (low, high) == (np.inf, -np.inf) and rows_within(scores, 0.0, 1.0, 0.0, 1.0).shape == (0,)
        if n:
            scores[n // 2] = np.nan  # numpy's min and max are NaN then, and NaN is in no band
            assert all(np.isnan(score_range(scores)))
            assert n // 2 not in rows_within(scores, -np.inf, np.inf, np.inf, -np.inf).tolist()
