"""Finding image ids in a store snapshot, vectorised: where a scope's images sit in the store.

``np.isin`` over a million string ids sorts both arrays (about a second, whatever the scope's size), and a
dict lookup costs a Python call per id. :class:`IdIndex` hashes each id to a 64-bit key with numpy arithmetic
over its characters, sorts the store's keys once, and finds a scope's keys with ``searchsorted``; every
match is then confirmed by comparing the ids themselves, so a hash collision can never put a wrong image in
scope. Should two of the store's own ids share a key, the index sorts the ids themselves instead (exact,
slower).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying is a bijection of 64-bit words
_FINAL = np.uint64(0xBF58476D1CE4E5B9)
#: Above this share of the store in scope, a mask over the store sorts positions faster than ``np.unique``.
_MASK_SHARE = 1 / 64


class IdIndex:
    """Positions of ids in an array of unique ids (a snapshot's :attr:`~picsift.core.store.StoreSnapshot.ids`).

    Parameters
    ----------
    ids
        The ids, unique; kept as given (a string array is not copied).
    """

    def __init__(self, ids: np.ndarray):
        self.ids = _even_width(np.asarray(ids) if len(ids) else np.zeros(0, "<U32"))
        keys = _keys(self.ids)
        self._order = np.argsort(keys, kind="stable")
        self._sorted: np.ndarray = keys[self._order]
        self._hashed = not np.any(self._sorted[1:] == self._sorted[:-1])
        if not self._hashed:  # two ids share a key: search the sorted ids themselves
            self._order = np.argsort(self.ids, kind="stable")
            self._sorted = self.ids[self._order]

    def positions(self, ids: Any) -> np.ndarray:
        """Positions of those of ``ids`` that the array holds, ascending and each once (int64).

        Ids it does not hold are left out; so are repeats.
        """
        wanted = self._comparable(ids)
        if not len(wanted) or not len(self.ids):
            return np.zeros(0, np.int64)
        probes = _keys(wanted) if self._hashed else wanted
        by = np.argsort(probes, kind="stable")  # sorted probes walk the sorted keys in order (cache-friendly)
        at = np.minimum(np.searchsorted(self._sorted, probes[by]), len(self.ids) - 1)
        found = self._order[at]
        found = found[self.ids[found] == wanted[by]]  # a key found is only a candidate: compare the ids
        if len(found) < _MASK_SHARE * len(self.ids):
            return np.unique(found)
        mask = np.zeros(len(self.ids), bool)
        mask[found] = True
        return np.flatnonzero(mask)

    def _comparable(self, ids: Any) -> np.ndarray:
        """``ids`` as a string array of the index's dtype, without those too long to be one of its ids."""
        wanted = np.asarray(ids)
        if not len(wanted):
            return np.zeros(0, self.ids.dtype)
        if wanted.dtype.kind != "U":
            wanted = wanted.astype(str)
        width = self.ids.dtype.itemsize // 4
        if wanted.dtype.itemsize // 4 > width:
            wanted = wanted[np.strings.str_len(wanted) <= width]  # casting would truncate them into false matches
        return wanted.astype(self.ids.dtype, copy=False)


def _even_width(ids: np.ndarray) -> np.ndarray:
    """A string array whose items are a whole number of 64-bit words (trailing NULs do not change a string)."""
    if ids.dtype.kind != "U":
        ids = ids.astype(str)
    width = max(2, ids.dtype.itemsize // 4)
    return ids.astype(f"<U{width + width % 2}", copy=False)


def _keys(ids: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each id (of an even-width string array), from its characters."""
    words = np.ascontiguousarray(ids).view(np.uint64).reshape(len(ids), ids.dtype.itemsize // 8)
    keys = np.zeros(len(ids), np.uint64)
    for column in words.T:
        keys *= _MULTIPLIER
        keys ^= column
    keys ^= keys >> np.uint64(31)  # finish: let the last word's bits reach every bit
    keys *= _FINAL
    keys ^= keys >> np.uint64(29)
    return keys
