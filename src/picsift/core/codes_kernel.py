"""The scans over one-byte codes (:mod:`picsift.core.codes`) and over float16 rows, compiled by numba.

numpy has no fast integer matrix product (its int8 ``@`` runs a plain loop, about 20x slower than a float32
BLAS product), and torch's int8 kernels either convert to float first or pack the matrix into their own
layout (a copy of every code). numba compiles :func:`scan_codes` to AVX2/AVX-512 integer multiply-adds over both
cores; on 1M x 512 codes it runs at the speed of reading them (bench/README.md). numba has no float16 on the CPU:
:func:`float16_dots` converts a float16 row's bits itself. Compiled once per machine (``cache=True``).
"""

from __future__ import annotations

import threading

import numba
import numpy as np

#: Held around every call of a parallel kernel here: numba's default thread pool (workqueue) must not be entered by
#: two threads at once.
LOCK = threading.Lock()
#: Rows a thread of :func:`float16_dots` converts between two allocations of its row buffer.
_CHUNK = 256


@numba.njit(parallel=True, nogil=True, cache=True)
def scan_codes(codes: np.ndarray, query: np.ndarray, rows: np.ndarray, step: float, offset: float,
               out: np.ndarray) -> None:  # pragma: no cover
    """``out[i] = step * (codes[rows[i], :dim] . query) + offset`` (``dim = len(query)``), NaN for a flagged row.

    The sum is int32 (int8 codes x int16 query: exact), the affine correction float64 once per row, then float32.
    numba widens ``int32 * int32`` to int64; without the wrap to int32 each step the loop ran in 64-bit lanes
    (vpmuldq), 2x slower (bench/README.md). No float arithmetic in the inner loop, and no fastmath (NaN marks
    flagged rows)."""
    dim = query.shape[0]
    for i in numba.prange(rows.shape[0]):
        row = rows[i]
        if codes[row, 0] == -128:
            out[i] = np.nan
            continue
        total = np.int32(0)
        for j in range(dim):  # wrapped to int32 at each step (never overflows: query_max), so LLVM keeps 32-bit
            total = np.int32(total + np.int32(codes[row, j]) * np.int32(query[j]))  # lanes: vpmaddwd, not int64
        out[i] = np.float32(np.float64(total) * step + offset)


@numba.njit(parallel=True, nogil=True, cache=True, fastmath={"reassoc", "contract", "nsz"})
def float16_dots(bits: np.ndarray, rows: np.ndarray, query: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``out[i] = x . query / ||x||``, ``x`` the float16 row ``rows[i]`` of a matrix whose bits are ``bits``
    (uint16): the exact score of that row, as :meth:`~picsift.core.store.StoreSnapshot.exact` computes it up to the
    order of sums (float64 here, in an order LLVM picks to vectorise them). A float16's magnitude bits shifted into
    a float32's are its value times 2^-112 (normals and subnormals alike), a factor the division by the norm
    cancels; rows are finite."""
    n, dim = rows.shape[0], query.shape[0]
    for chunk in numba.prange((n + _CHUNK - 1) // _CHUNK):
        word = np.empty(dim, np.uint32)
        value = word.view(np.float32)
        for i in range(chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)):
            row = rows[i]
            for j in range(dim):
                h = np.uint32(bits[row, j])
                word[j] = ((h & np.uint32(0x8000)) << np.uint32(16)) | ((h & np.uint32(0x7FFF)) << np.uint32(13))
            dot = 0.0
            norm = 0.0
            for j in range(dim):
                x = np.float64(value[j])
                dot += x * np.float64(query[j])
                norm += x * x
            out[i] = np.float32(dot / np.sqrt(norm)) if norm > 0 else np.float32(0)  # the 2^112 cancels


@numba.njit(nogil=True, cache=True)
def bin_counts(scores: np.ndarray, low: float, width: float, bins: int) -> np.ndarray:  # pragma: no cover
    """How many of the finite ``scores`` fall in each of ``bins`` bins of ``width`` from ``low`` (the last bin
    closed, as ``np.histogram`` counts; about 4x less CPU than it)."""
    counts = np.zeros(bins, np.int64)
    inverse = 1.0 / width
    for i in range(scores.shape[0]):
        at = (np.float64(scores[i]) - low) * inverse
        if at >= 0.0 and at <= bins:
            counts[min(int(at), bins - 1)] += 1
    return counts


@numba.njit(parallel=True, nogil=True, cache=True)
def near_edges(scores: np.ndarray, low: float, width: float, reach: np.ndarray,
               out: np.ndarray) -> None:  # pragma: no cover
    """``out[i]``: whether ``scores[i]`` is within ``reach[e]`` of inner edge ``e`` (``1 <= e < len(reach) - 1``)
    of bins of ``width`` from ``low``: a score a histogram could count in a neighbouring bin if it were off by up
    to that much."""
    inverse = 1.0 / width
    last = reach.shape[0] - 1
    for i in numba.prange(scores.shape[0]):
        at = (np.float64(scores[i]) - low) * inverse
        edge = np.floor(at + 0.5)
        out[i] = (edge >= 1.0) & (edge < last) and abs(at - edge) * width <= reach[min(max(int(edge), 0), last)]


@numba.njit(parallel=True, nogil=True, cache=True)
def encode_rows(vectors: np.ndarray, centre: np.ndarray, scale: np.ndarray, residual_cap: float, norm_cap: float,
                out: np.ndarray) -> None:  # pragma: no cover
    """The codes of :func:`picsift.core.codes_format.encode` in one pass over each row (numpy's takes ten, in float64
    temporaries): ``out[i] = clip(rint((x - centre) / scale), -127, 127)``, flagged (-128, then zeros) when the
    residual or the codes' norm passes its cap. No fastmath: the codes must not depend on how LLVM orders the sums."""
    n, dim = vectors.shape
    for i in numba.prange(n):
        residual = 0.0
        norm = 0.0
        for j in range(dim):
            centred = vectors[i, j] - centre[j]  # float32, as numpy computes it
            code = min(max(np.rint(centred / scale[j]), np.float32(-127)), np.float32(127))
            left = np.float64(centred) - np.float64(code) * np.float64(scale[j])
            residual += left * left
            norm += np.float64(code) * np.float64(code)
            out[i, j] = np.int8(code)
        if not (np.sqrt(residual) <= residual_cap and np.sqrt(norm) <= norm_cap):
            out[i, 0] = -128
            for j in range(1, dim):
                out[i, j] = 0
