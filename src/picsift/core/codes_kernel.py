"""The scan over one-byte codes (:mod:`picsift.core.codes`), compiled by numba.

numpy has no fast integer matrix product (its int8 ``@`` runs a plain loop, about 20x slower than a float32
BLAS product), and torch's int8 kernels either convert to float first or pack the matrix into their own
layout (a copy of every code). numba compiles this loop to AVX2/AVX-512 integer multiply-adds over both
cores; on 1M x 512 codes it runs at about the speed of reading them (bench/README.md). Compiled once per
machine (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

#: What :func:`dot_codes` writes for a flagged row (first code -128): no sum of codes reaches it.
FLAGGED = np.int32(-(2**31))


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def dot_codes(codes: np.ndarray, query: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``out[i] = codes[rows[i], :dim] . query`` in int32 (``dim = len(query)``), :data:`FLAGGED` for a flagged row.

    Scaling happens outside: float arithmetic in this loop halves its speed (LLVM then vectorises less of it)."""
    dim = query.shape[0]
    for i in numba.prange(rows.shape[0]):
        row = rows[i]
        if codes[row, 0] == -128:
            out[i] = -2147483648
            continue
        total = np.int32(0)
        for j in range(dim):
            total += np.int32(codes[row, j]) * np.int32(query[j])
        out[i] = total


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
