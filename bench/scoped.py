"""A search ``within`` a scope, from the scope's ids to the ``limit`` best: today's path against the one before
the id index (commit 38b18f6), which is kept here to be timed in the same process (``bench/query.py
--only-filtered``).

Before: positions by ``np.isin`` over every stored id, the scope's rows gathered by memmap indexing and scored
(BLAS), the band near the cut rescored exactly (BLAS), ``select``. Today: positions from the snapshot's id
index, rows gathered with ``take`` a block at a time, exact scores summed per row (ties in store order).
"""

from __future__ import annotations

import numpy as np
from common import median, table, timed

from picsift.core.store import StoreSnapshot, _scan_float16
from picsift.query.scope import Scope
from picsift.query.search import exact_top, query_vectors, score_scope, select


def _float32(block: np.ndarray) -> np.ndarray:
    out = np.asarray(block, dtype=np.float32)
    if block.dtype == np.float16 and out.size:
        out /= np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    return out


def _scan(snapshot: StoreSnapshot, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    queries = np.asarray(queries, dtype=np.float32).reshape(-1, snapshot.dim)
    if not len(rows) or not len(queries):
        return np.zeros((len(rows), len(queries)), np.float32)
    gather = len(rows) < 0.3 * snapshot.matrix.shape[0]
    matrix = np.asarray(snapshot.matrix[rows]) if gather else snapshot.matrix
    if matrix.dtype != np.float16:
        scores = np.asarray(matrix @ queries.T, dtype=np.float32)
    elif len(matrix) <= 65_536:
        scores = _float32(matrix) @ queries.T
    else:
        scores = _scan_float16(matrix, queries)
    return scores if gather else scores[rows]


def _exact_rows(snapshot: StoreSnapshot, queries: np.ndarray, rows: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    queries = np.asarray(queries, dtype=np.float32).reshape(-1, snapshot.dim)
    out = np.empty((len(rows), len(queries)), np.float32)
    for start in range(0, len(rows), chunk):
        part = np.asarray(rows[start : start + chunk])
        order = np.argsort(part, kind="stable")
        out[start + order] = _float32(snapshot.matrix[part[order]]) @ queries.T
    return out


def _score_scope(snapshot: StoreSnapshot, positions: np.ndarray, positives: np.ndarray,
                 exact: bool = False) -> np.ndarray:
    rows = snapshot.rows[positions]
    if not len(rows):
        return np.zeros(0, np.float32)
    queries = query_vectors(positives, "mean")
    scores = _exact_rows(snapshot, queries, rows) if exact else _scan(snapshot, queries, rows)
    return scores[:, 0].astype(np.float32, copy=False)


def _exact_top(snapshot: StoreSnapshot, positions: np.ndarray, scores: np.ndarray, limit: int,
               positives: np.ndarray) -> np.ndarray:
    error = snapshot.scan_error
    if not error or not len(scores):
        return scores
    picked = select(scores, limit, None, None)
    lower = -np.inf
    if len(picked) == limit:
        lower = float(scores[picked[-1]]) - 2 * error
    band = np.flatnonzero(scores >= lower)
    refined = scores.copy()
    refined[band] = _score_scope(snapshot, positions[band], positives, exact=True)
    return refined


def scoped_top_before(snapshot: StoreSnapshot, scope_ids: np.ndarray, query: np.ndarray, limit: int,
                      positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``limit`` best of the scope (ids, scores) and every score in scope, as ``Searcher`` computed them
    (from the scope's ``positions`` in the store when given)."""
    positions = np.flatnonzero(np.isin(snapshot.ids, scope_ids)) if positions is None else positions
    scores = _exact_top(snapshot, positions, _score_scope(snapshot, positions, query[None, :]), limit,
                        query[None, :])
    picked = select(scores, limit, None, None)
    return snapshot.ids[positions][picked], scores[picked], scores


def scoped_top(snapshot: StoreSnapshot, scope_ids: np.ndarray, query: np.ndarray, limit: int,
               positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same, as ``Searcher`` computes it today."""
    positions = Scope(scope_ids).positions(snapshot) if positions is None else positions
    scores = exact_top(snapshot, positions, score_scope(snapshot, positions, query[None, :]), limit, None, None,
                       query[None, :], None, "mean", 0.5)
    picked = select(scores, limit, None, None)
    return snapshot.ids[positions][picked], scores[picked], scores


def compare(snapshot: StoreSnapshot, queries: np.ndarray, limit: int, seed: int = 5) -> list[list]:
    """Before vs today on a random 1% / 10% / 30% of the images (in random order, as a filter's ids come),
    from the scope's ids and from its positions (scoring alone), alternating which runs first query by query;
    checks that both give the same results."""
    rng = np.random.default_rng(seed)
    n = len(snapshot)
    built, _ = timed(lambda: snapshot.id_index)
    rows = [["(once per store version)", "", 1000 * built, "", "", "", "", "", "building the id index", ""]]
    for fraction in (0.01, 0.1, 0.3):
        scope_ids = snapshot.ids[rng.choice(n, int(fraction * n), replace=False)]
        scoped_top(snapshot, scope_ids, queries[0], limit)  # warm: the scope's pages in memory
        scoped_top_before(snapshot, scope_ids, queries[0], limit)
        positions = Scope(scope_ids).positions(snapshot)
        times: dict[str, list[float]] = {"before": [], "today": [], "positions": [], "scoring before": [],
                                         "scoring today": []}
        same_ids, result_diff, every_diff = True, 0.0, 0.0
        for j, q in enumerate(queries):
            results = {}
            for name in (("before", "today") if j % 2 else ("today", "before")):
                fn = scoped_top_before if name == "before" else scoped_top
                t, results[name] = timed(lambda fn=fn, q=q, s=scope_ids: fn(snapshot, s, q, limit))
                times[name].append(t)
            times["positions"].append(timed(lambda s=scope_ids: Scope(s).positions(snapshot))[0])
            for name in (("scoring before", "scoring today") if j % 2 else ("scoring today", "scoring before")):
                fn = scoped_top_before if name == "scoring before" else scoped_top
                times[name].append(timed(lambda fn=fn, q=q, s=scope_ids, p=positions: fn(snapshot, s, q, limit, p))[0])
            (ids0, s0, all0), (ids1, s1, all1) = results["before"], results["today"]
            same_ids &= ids0.tolist() == ids1.tolist()
            result_diff = max(result_diff, float(np.abs(s0 - s1).max()))
            every_diff = max(every_diff, float(np.abs(all0 - all1).max()))
        before, today = 1000 * median(times["before"]), 1000 * median(times["today"])
        scoring_before, scoring_today = 1000 * median(times["scoring before"]), 1000 * median(times["scoring today"])
        rows.append([f"{fraction:.0%}", before, today, f"{today / before:.3f}x", 1000 * median(times["positions"]),
                     scoring_before, scoring_today, f"{scoring_today / scoring_before:.3f}x",
                     "yes" if same_ids else "NO", f"{result_diff:.1e} / {every_diff:.1e}"])
    return rows


def filtered(edge: object, snapshot: StoreSnapshot, ids: list[str], data: np.ndarray, queries: np.ndarray, k: int
             ) -> None:
    """Top-100 among a random 1% / 10% / 30% of the images: scored exactly from the scope's ids (what a search
    ``within`` a scope does) vs pushed down to the engine, by id (``restrict_to``) and by a payload field with a
    keyword index (what dataset, tag or collection filters would become if their values were kept in the shard)."""
    import qdrant_edge as qe

    from picsift.index.qdrant_edge import image_id, point_id

    shard = edge._shard  # type: ignore[attr-defined]
    shard.update(qe.UpdateOperation.create_field_index("part", qe.PayloadSchemaType.Keyword))
    rng = np.random.default_rng(5)
    rows = []
    for fraction in (0.01, 0.1, 0.3):
        chosen = np.sort(rng.choice(len(ids), int(fraction * len(ids)), replace=False))
        allowed = [ids[i] for i in chosen]
        label = f"p{fraction}"
        for start in range(0, len(allowed), 10_000):
            shard.update(qe.UpdateOperation.set_payload([point_id(i) for i in allowed[start : start + 10_000]],
                                                        {"part": label}))
        payload_filter = qe.Filter(must=[qe.FieldCondition("part", match=qe.MatchValue(label))])
        truth = [set(np.array(allowed)[np.argsort(-(data[chosen] @ q))[:k]].tolist()) for q in queries]
        times: dict[str, list[float]] = {"exact": [], "ids": [], "payload": []}
        found: dict[str, list[set[str]]] = {"exact": [], "ids": [], "payload": []}
        scope_ids = np.array(allowed)
        for q in queries:
            def exact(q: np.ndarray = q, scope_ids: np.ndarray = scope_ids) -> set[str]:
                return set(scoped_top(snapshot, scope_ids, q, k)[0].tolist())

            def by_ids(q: np.ndarray = q, allowed: list[str] = allowed) -> set[str]:
                return set(edge.search(q, k, restrict_to=allowed)[0])  # type: ignore[attr-defined]

            def by_payload(q: np.ndarray = q, payload_filter: object = payload_filter) -> set[str]:
                coded = edge._encode(q[None, :], clip=False)[0].astype(np.float32)  # type: ignore[attr-defined]
                hits = shard.query(qe.QueryRequest(limit=k, query=qe.Query.Nearest(coded), filter=payload_filter,
                                                   params=qe.SearchParams(hnsw_ef=edge.ef)))  # type: ignore[attr-defined]
                return {image_id(h.id) for h in hits}

            for name, fn in (("exact", exact), ("ids", by_ids), ("payload", by_payload)):
                t, result = timed(fn)
                times[name].append(t)
                found[name].append(result)
        base = median(times["exact"])
        for name, what in (("exact", "scope scored exactly (ids -> positions, float16 scan + exact_top)"),
                           ("ids", "qdrant-edge, restrict_to ids (HasIdCondition)"),
                           ("payload", "qdrant-edge, payload keyword filter")):
            rec = float(np.mean([len(f & t) / k for f, t in zip(found[name], truth, strict=True)]))
            ms = 1000 * median(times[name])
            rows.append([f"{fraction:.0%}", what, ms, rec, f"{ms / 1000 / base:.2f}x"])
    print(f"\nfiltered top-{k} (text-like queries; a random 1/10/30% of the images in scope):")
    print(table(rows, ["in scope", "how", "median ms", "recall@100", "vs exact"]))


HEADERS = ["in scope", "before ms", "today ms", "today/before", "today: positions ms", "from positions: before ms",
           "today ms", "today/before", "same ids", "max |score diff|: results / all"]
