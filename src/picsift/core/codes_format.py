"""The encoding of the score codes (:mod:`picsift.core.codes`): one byte per dimension, centred and scaled per
dimension, and the small header that fixes how.

A stored vector ``x`` (as :meth:`~picsift.core.store.StoreSnapshot.vectors` gives it: float32, unit length) is
kept as int8 codes ``c = clip(rint((x - centre) / scale), -127, 127)``, ``centre`` and ``scale`` one number per
dimension, fitted once on a sample of the rows (:func:`fit`) and kept in the file's header. CLIP embeddings share a
large common direction and a few dimensions of large magnitude: centring removes the first, a scale per dimension
gives each dimension all 255 steps of its own range (one scale per row spent them on its largest dimension).

Every row's residual ``r = ||x - centre - scale c||`` (rounding, and clipping of a row outside the fitted range) is
at most the header's ``residual_cap`` and its codes' norm ``||c||`` at most ``norm_cap``; a row that exceeds
either (an image unlike the sample) is *flagged*: its first code is -128, a value no code takes, and its score is
computed exactly from the store at every scan. So every other score is within :attr:`Header.error` of the exact
one, a bound and not an estimate: with ``a = query * scale`` rounded to int16 ``q'`` in steps of ``step``,
``|q.x - q.centre - step c.q'| <= ||q|| r + ||a - step q'|| ||c||`` (Cauchy-Schwarz), and
``||a - step q'|| <= step sqrt(dim) / 2``, ``step = max|a| / query_max(dim) <= max(scale) / query_max(dim)``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

#: The header's first bytes; a file without them (written by the per-row codes of an earlier version) is rebuilt.
MAGIC = b"PSCODES2"
_FIXED = struct.Struct("<8sIIQdd")  # magic, version, dim, rows fitted on, residual_cap, norm_cap
VERSION = 2
#: The first code of a flagged row (no code takes it: codes are clipped to +-127).
FLAG = -128
#: The caps are the sample's largest residual and codes' norm, widened by this margin, so rows a little outside the
#: sample's range are still coded (their clipping counted in their residual) and only rows unlike it are flagged.
CAP_MARGIN = 1.25
_SMALLEST_SCALE = 1e-6


def query_max(dim: int) -> int:
    """The largest int16 a query component is rounded to: ``127 * dim * query_max`` stays within int32."""
    return int(min(32767, (2**31 - 1) // (127 * max(1, dim))))


def header_size(dim: int) -> int:
    """Bytes of the header in the file, a multiple of 64 so rows start aligned."""
    return -(-(_FIXED.size + 8 * dim) // 64) * 64


@dataclass(frozen=True)
class Header:
    """How rows are coded: ``x ~= centre + scale * codes``, and the caps of an unflagged row."""

    centre: np.ndarray  # (dim,) float32
    scale: np.ndarray  # (dim,) float32, > 0
    residual_cap: float
    norm_cap: float
    fitted_rows: int

    @property
    def dim(self) -> int:
        return len(self.centre)

    @property
    def size(self) -> int:
        return header_size(self.dim)

    @property
    def error(self) -> float:
        """How far the score of an unflagged row may be from the exact one, for a unit query (see the module)."""
        step = float(self.scale.max()) / query_max(self.dim) if self.dim else 0.0
        rounding = step * np.sqrt(self.dim) / 2 * self.norm_cap
        return (1 + 1e-6) * (self.residual_cap + rounding) + 1e-6  # float32 arithmetic of the scan

    def to_bytes(self) -> bytes:
        fixed = _FIXED.pack(MAGIC, VERSION, self.dim, self.fitted_rows, self.residual_cap, self.norm_cap)
        body = fixed + self.centre.astype("<f4").tobytes() + self.scale.astype("<f4").tobytes()
        return body + bytes(self.size - len(body))

    @classmethod
    def from_bytes(cls, data: bytes, dim: int) -> Header:
        """The header at the start of ``data``; ``ValueError`` naming the problem when it is not one for ``dim``."""
        if len(data) < _FIXED.size or data[:8] != MAGIC:
            raise ValueError("no codes header (a file of an earlier version)")
        _, version, stored_dim, fitted, residual_cap, norm_cap = _FIXED.unpack_from(data)
        if version != VERSION or stored_dim != dim:
            raise ValueError(f"codes header of version {version} for {stored_dim} dimensions, not {VERSION} and {dim}")
        end = _FIXED.size + 8 * dim
        if len(data) < end:
            raise ValueError("codes header cut short")
        centre = np.frombuffer(data, "<f4", dim, _FIXED.size).astype(np.float32)
        scale = np.frombuffer(data, "<f4", dim, _FIXED.size + 4 * dim).astype(np.float32)
        if not (np.isfinite(centre).all() and np.isfinite(scale).all() and (scale > 0).all()
                and np.isfinite(residual_cap) and residual_cap >= 0 and np.isfinite(norm_cap) and norm_cap >= 0):
            raise ValueError("codes header holds numbers out of range")
        return cls(centre, scale, float(residual_cap), float(norm_cap), int(fitted))


def _code(vectors: np.ndarray, centre: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes, residual norms and codes' norms (float64, so the residual is exact to ~1e-16)."""
    centred = vectors - centre
    codes = np.clip(np.rint(centred / scale), -127, 127)
    residual = np.sqrt(((centred.astype(np.float64) - codes * scale.astype(np.float64)) ** 2).sum(axis=1))
    norms = np.sqrt((codes.astype(np.float64) ** 2).sum(axis=1))
    with np.errstate(invalid="ignore"):  # a NaN row: flagged by the caller
        return codes.astype(np.int8), residual, norms


def fit(sample: np.ndarray, fitted_rows: int) -> Header:
    """A header for rows like ``sample`` (float32 unit vectors): their mean, each dimension's largest deviation
    over 127, and the caps (the sample's largest residual and norm, widened by :data:`CAP_MARGIN`)."""
    sample = np.asarray(sample, dtype=np.float32)
    sample = sample[np.isfinite(sample).all(axis=1)]  # a damaged row would spoil every dimension's range
    dim = sample.shape[1]
    if not len(sample):
        return Header(np.zeros(dim, np.float32), np.full(dim, 1 / 127, np.float32), 0.0, 0.0, 0)
    centre = sample.mean(axis=0, dtype=np.float64).astype(np.float32)
    scale = np.maximum(np.abs(sample - centre).max(axis=0) / 127, _SMALLEST_SCALE).astype(np.float32)
    _, residual, norms = _code(sample, centre, scale)
    return Header(centre, scale, CAP_MARGIN * float(residual.max()), CAP_MARGIN * float(norms.max()), fitted_rows)


def encode_reference(vectors: np.ndarray, header: Header) -> np.ndarray:
    """:func:`encode` in numpy (ten passes over float64 temporaries; the tests hold the kernel to it)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    codes, residual, norms = _code(vectors, header.centre, header.scale)
    flagged = ~((residual <= header.residual_cap) & (norms <= header.norm_cap))  # NaN rows too
    codes[flagged] = 0
    codes[flagged, :1] = FLAG
    return codes


def encode(vectors: np.ndarray, header: Header) -> np.ndarray:
    """Rows of the codes file for float32 unit ``vectors``: ``(n, dim)`` int8, flagged rows starting with -128."""
    from .codes_kernel import LOCK, encode_rows  # numba compiles on first use: not when the store is only read

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    out = np.empty(vectors.shape, np.int8)
    if len(vectors):
        with LOCK:
            encode_rows(vectors, header.centre, header.scale, header.residual_cap, header.norm_cap, out)
    return out
