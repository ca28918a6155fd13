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
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

#: Held around every call of a parallel kernel here: numba's default thread pool (workqueue) must not be entered by
#: two threads at once.
LOCK = threading.Lock()
#: Rows a thread of :func:`float16_dots` converts between two allocations of its row buffer.
_CHUNK = 256
#: Blocks of rows the counting kernels split the scores into (each core takes blocks in turn).
_BLOCKS = 64
#: How many rows ahead :func:`float16_dots` asks the memory for (a row of 512 float16 is 16 cache lines).
_AHEAD = 2
#: How many rows ahead :func:`scan_codes` asks for a scope's scattered rows (a row of 512 codes is 8 lines): at 1M
#: codes, a 10% scope 8.6 -> 5.0 ms, 30% 19.7 -> 13.7; every row in order 16.5 -> 18.7 ms, so not there.
SCAN_AHEAD = 8


@intrinsic
def _prefetch(typingctx, array, row, column):  # pragma: no cover
    """Ask the memory for the cache line of ``array[row, column]`` (a 2-D array) before it is read (LLVM's
    ``llvm.prefetch``: a read, kept in every cache level). The rows a search rescores are scattered over the store,
    so the hardware cannot guess them: without it each row's first lines wait a full memory latency."""

    def codegen(context, builder, signature, args):
        kind = signature.args[0]
        view = context.make_array(kind)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, kind, view,
                                           [args[1], args[2]])
        byte = ir.IntType(8).as_pointer()
        word = ir.IntType(32)
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [byte] + [word] * 3),
                                                  "llvm.prefetch.p0i8")
        builder.call(function, [builder.bitcast(pointer, byte), word(0), word(3), word(1)])
        return context.get_dummy_value()

    return numba.types.void(array, row, column), codegen


@numba.njit(nogil=True, cache=True, inline="always")
def _code_score(codes: np.ndarray, query: np.ndarray, row: int, step: float,
                offset: float) -> np.float32:  # pragma: no cover
    """``step * (codes[row, :dim] . query) + offset`` as float32, NaN for a flagged row (see :func:`scan_codes`)."""
    if codes[row, 0] == -128:
        return np.float32(np.nan)
    total = np.int32(0)
    for j in range(query.shape[0]):  # wrapped to int32 at each step (never overflows: query_max), so LLVM keeps
        total = np.int32(total + np.int32(codes[row, j]) * np.int32(query[j]))  # 32-bit lanes: vpmaddwd, not int64
    return np.float32(np.float64(total) * step + offset)


@numba.njit(parallel=True, nogil=True, cache=True)
def scan_codes(codes: np.ndarray, query: np.ndarray, rows: np.ndarray, step: float, offset: float,
               out: np.ndarray, ahead: int = 0) -> None:  # pragma: no cover
    """``out[i] = step * (codes[rows[i], :dim] . query) + offset`` (``dim = len(query)``), NaN for a flagged row.

    The sum is int32 (int8 codes x int16 query: exact), the affine correction float64 once per row, then float32.
    numba widens ``int32 * int32`` to int64; without the wrap to int32 each step the loop ran in 64-bit lanes
    (vpmuldq), 2x slower (bench/README.md). No float arithmetic in the inner loop, and no fastmath (NaN marks
    flagged rows). With ``ahead`` > 0, each row's cache lines are asked for ``ahead`` rows before it is read: for
    rows scattered over the codes (a scope), which the hardware cannot guess; rows read in order need no help
    (:data:`SCAN_AHEAD`)."""
    n = rows.shape[0]
    for i in numba.prange(n):
        if ahead > 0 and i + ahead < n:
            _prefetch_row(codes, rows[i + ahead])
        out[i] = _code_score(codes, query, rows[i], step, offset)


@numba.njit(nogil=True, cache=True)
def scan_codes_serial(codes: np.ndarray, query: np.ndarray, rows: np.ndarray, step: float, offset: float,
                      out: np.ndarray, ahead: int = 0) -> None:  # pragma: no cover
    """:func:`scan_codes` on the calling thread: for the few thousand rows of an inverted file's lists, where waking
    numba's second thread costs more than it saves and a busy machine makes a parallel call wait for a core
    (bench/ivf.py). A function of its own, not ``njit(scan_codes.py_func)``: numba's disk cache names a compiled
    function by its source's name and line, so that copy and :func:`scan_codes` shared one cache entry, and whichever
    compiled first ran for both (the histogram's scan on one core: 22.7 ms at 1M where two cores take 16.9)."""
    n = rows.shape[0]
    for i in range(n):
        if ahead > 0 and i + ahead < n:
            _prefetch_row(codes, rows[i + ahead])
        out[i] = _code_score(codes, query, rows[i], step, offset)


@numba.njit(nogil=True, cache=True)
def list_rows(order: np.ndarray, rows: np.ndarray, offsets: np.ndarray,
              lists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """The positions (``order[i]``) and rows (``rows[i]``) of every member of ``lists``, list after list, where list
    ``l``'s members are ``offsets[l]:offsets[l + 1]`` (an inverted file's lists; one pass, no temporaries)."""
    count = 0
    for at in lists:
        count += offsets[at + 1] - offsets[at]
    positions = np.empty(count, np.int64)
    picked = np.empty(count, np.int64)
    out = 0
    for at in lists:
        for i in range(offsets[at], offsets[at + 1]):
            positions[out] = order[i]
            picked[out] = rows[i]
            out += 1
    return positions, picked


@numba.njit(parallel=True, nogil=True, cache=True, fastmath={"reassoc", "contract", "nsz"})
def float16_dots(bits: np.ndarray, rows: np.ndarray, query: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``out[i] = x . query / ||x||``, ``x`` the float16 row ``rows[i]`` of a matrix whose bits are ``bits``
    (uint16), ``query`` float64: the exact score of that row, as :meth:`~picsift.core.store.StoreSnapshot.exact`
    computes it up to the order of sums (float64 here, in an order LLVM picks to vectorise them). A float16's magnitude
    bits shifted into a float32's are its value times 2^-112 (normals and subnormals alike), a factor the division by
    the norm cancels; rows are finite. Each row's cache lines are asked for :data:`_AHEAD` rows before it is read."""
    n, dim = rows.shape[0], query.shape[0]
    for chunk in numba.prange((n + _CHUNK - 1) // _CHUNK):
        word = np.empty(dim, np.uint32)
        value = word.view(np.float32)
        stop = min(n, (chunk + 1) * _CHUNK)
        for i in range(chunk * _CHUNK, min(stop, chunk * _CHUNK + _AHEAD)):
            _prefetch_row(bits, rows[i])
        for i in range(chunk * _CHUNK, stop):
            if i + _AHEAD < stop:
                _prefetch_row(bits, rows[i + _AHEAD])
            row = rows[i]
            for j in range(dim):
                h = np.uint32(bits[row, j])
                word[j] = ((h & np.uint32(0x8000)) << np.uint32(16)) | ((h & np.uint32(0x7FFF)) << np.uint32(13))
            dot = 0.0
            norm = 0.0
            for j in range(dim):
                x = np.float64(value[j])
                dot += x * query[j]
                norm += x * x
            out[i] = np.float32(dot / np.sqrt(norm)) if norm > 0 else np.float32(0)  # the 2^112 cancels


@numba.njit(inline="always", nogil=True, cache=True)
def _prefetch_row(array: np.ndarray, row: int) -> None:  # pragma: no cover
    """Every cache line (64 bytes: 32 float16, 64 codes) of row ``row`` of a 2-D array asked for (the last too: a
    row need not start on a line)."""
    last = array.shape[1] - 1
    for j in range(0, last, 64 // array.itemsize):
        _prefetch(array, row, j)  # type: ignore[call-arg]  # numba's typing context is the first parameter
    _prefetch(array, row, last)  # type: ignore[call-arg]


@numba.njit(inline="always", nogil=True, cache=True)
def _summed(counts: np.ndarray) -> np.ndarray:  # pragma: no cover
    """The per-block counts of a counting kernel (one row a block) added up."""
    total = np.zeros(counts.shape[1], np.int64)
    for block in range(counts.shape[0]):
        total += counts[block]
    return total


@numba.njit(parallel=True, nogil=True, cache=True)
def bin_counts(scores: np.ndarray, low: float, width: float, bins: int) -> np.ndarray:  # pragma: no cover
    """How many of the finite ``scores`` fall in each of ``bins`` bins of ``width`` from ``low`` (the last bin
    closed, as ``np.histogram`` counts; about 4x less CPU than it), counted a block at a time on every core."""
    n = scores.shape[0]
    size = (n + _BLOCKS - 1) // _BLOCKS
    counts = np.zeros((_BLOCKS, bins), np.int64)
    inverse = 1.0 / width
    for block in numba.prange(_BLOCKS):
        for i in range(block * size, min(n, (block + 1) * size)):
            at = (np.float64(scores[i]) - low) * inverse
            if at >= 0.0 and at <= bins:
                counts[block, min(int(at), bins - 1)] += 1
    return _summed(counts)


@numba.njit(parallel=True, nogil=True, cache=True)
def edge_counts(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:  # pragma: no cover
    """How many ``scores`` fall in each bin between consecutive ``edges`` (equal bins, increasing): what
    ``np.histogram(scores, edges)`` counts (each bin half-open but the last; a score is compared with the edges
    themselves, so one on an edge counts where numpy counts it), a block at a time on every core and without
    numpy's temporaries."""
    n = scores.shape[0]
    bins = edges.shape[0] - 1
    size = (n + _BLOCKS - 1) // _BLOCKS
    counts = np.zeros((_BLOCKS, bins), np.int64)
    low, high = np.float64(edges[0]), np.float64(edges[bins])
    scale = bins / (high - low) if high > low else 0.0
    for block in numba.prange(_BLOCKS):
        for i in range(block * size, min(n, (block + 1) * size)):
            x = np.float64(scores[i])
            if not (x >= low and x <= high):  # outside the range, or NaN
                continue
            at = min(max(int((x - low) * scale), 0), bins - 1)
            while at > 0 and x < np.float64(edges[at]):
                at -= 1
            while at < bins - 1 and x >= np.float64(edges[at + 1]):
                at += 1
            counts[block, at] += 1
    return _summed(counts)


@numba.njit(parallel=True, nogil=True, cache=True)
def near_edges(scores: np.ndarray, low: float, width: float, reach: np.ndarray,
               out: np.ndarray) -> None:  # pragma: no cover
    """``out[i]``: whether ``scores[i]`` is within ``reach[e]`` of inner edge ``e`` (``1 <= e < len(reach) - 1``)
    of bins of ``width`` from ``low``: a score a histogram could count in a neighbouring bin if it were off by up
    to that much."""
    inverse = 1.0 / width
    for i in numba.prange(scores.shape[0]):
        out[i] = _near(scores[i], low, inverse, width, reach)


@numba.njit(inline="always", nogil=True, cache=True)
def _near(score: float, low: float, inverse: float, width: float, reach: np.ndarray) -> bool:  # pragma: no cover
    """Whether ``score`` is within ``reach[e]`` of an inner edge ``e`` of bins of ``width`` (``1 / inverse``) from
    ``low``; NaN is not."""
    at = (np.float64(score) - low) * inverse
    edge = np.floor(at + 0.5)
    if edge >= 1.0 and edge < reach.shape[0] - 1:
        return abs(at - edge) * width <= reach[int(edge)]
    return False


@numba.njit(parallel=True, nogil=True, cache=True)
def edge_rows(scores: np.ndarray, low: float, width: float, reach: np.ndarray,
              skip: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Positions (ascending) of the scores :func:`near_edges` marks, but those ``skip`` marks: each block of rows
    writes its own part of one buffer in one pass, and the parts are joined after."""
    n = scores.shape[0]
    size = (n + _BLOCKS - 1) // _BLOCKS
    found = np.empty(n, np.int64)  # every position is written at the block's next free place, kept when near
    counts = np.zeros(_BLOCKS, np.int64)
    inverse = 1.0 / width
    for block in numba.prange(_BLOCKS):
        start = block * size
        kept = start
        for i in range(start, min(n, start + size)):
            found[kept] = i
            if not skip[i]:
                kept += _near(scores[i], low, inverse, width, reach)
        counts[block] = kept - start
    return _joined(found, counts, size)


@numba.njit(parallel=True, nogil=True, cache=True)
def score_range(scores: np.ndarray) -> tuple[float, float]:  # pragma: no cover
    """The lowest and the highest of ``scores`` in one pass on every core (numpy's ``min`` and ``max`` take one pass
    each on one core), NaN when any score is NaN (as numpy's are); ``(inf, -inf)`` for no scores."""
    n = scores.shape[0]
    size = (n + _BLOCKS - 1) // _BLOCKS
    lows = np.full(_BLOCKS, np.inf)
    highs = np.full(_BLOCKS, -np.inf)
    nans = np.zeros(_BLOCKS, np.bool_)
    for block in numba.prange(_BLOCKS):
        low, high, nan = np.inf, -np.inf, False
        for i in range(block * size, min(n, (block + 1) * size)):
            x = np.float64(scores[i])
            low = x if x < low else low
            high = x if x > high else high
            nan |= x != x
        lows[block], highs[block], nans[block] = low, high, nan
    if nans.any():
        return np.nan, np.nan
    return lows.min(), highs.max()


@numba.njit(parallel=True, nogil=True, cache=True)
def rows_within(scores: np.ndarray, lower: float, upper: float, below: float,
                above: float) -> np.ndarray:  # pragma: no cover
    """Positions (ascending) of the scores in ``[lower, upper]``, at most ``below`` or at least ``above`` (NaN is
    none of them): the few a search rescores exactly, found in one pass on every core without numpy's five masks."""
    n = scores.shape[0]
    size = (n + _BLOCKS - 1) // _BLOCKS
    found = np.empty(n, np.int64)
    counts = np.zeros(_BLOCKS, np.int64)
    for block in numba.prange(_BLOCKS):
        kept = block * size
        for i in range(block * size, min(n, (block + 1) * size)):
            x = np.float64(scores[i])
            if (x >= lower and x <= upper) or x <= below or x >= above:  # few: a write only for those kept
                found[kept] = i
                kept += 1
        counts[block] = kept - block * size
    return _joined(found, counts, size)


@numba.njit(inline="always", nogil=True, cache=True)
def _joined(found: np.ndarray, counts: np.ndarray, size: int) -> np.ndarray:  # pragma: no cover
    """The first ``counts[b]`` positions of each block ``b`` of ``size`` in ``found``, joined in order."""
    out = np.empty(counts.sum(), np.int64)
    offset = 0
    for block in range(counts.shape[0]):
        out[offset : offset + counts[block]] = found[block * size : block * size + counts[block]]
        offset += counts[block]
    return out


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
