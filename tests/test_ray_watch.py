"""GcsWatch (picsift.core.ray_watch) on its own: what it does when the results fail, with the control store up
or gone (a listening loopback socket stands for it; the Ray tests lose a real head node)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from picsift.core.ray_watch import GcsWatch


class Batches:
    """Results that fail after one batch, and remember whether the consumer's side stopped them."""

    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[int]:
        yield 1
        raise RuntimeError("an actor died")

    def close(self) -> None:
        self.closed = True


def watched(gone: bool) -> tuple[Batches, list[int]]:
    store = socket.create_server(("127.0.0.1", 0))
    host, port = store.getsockname()
    watch = GcsWatch("127.0.0.1:1", f"{host}:{port}", on_lost=lambda: None)
    assert watch.enabled
    batches, seen = Batches(), []
    results = watch.follow(batches)
    if gone:
        store.close()  # the head node goes away with the results' error
    try:
        with pytest.raises(RuntimeError, match="an actor died"):
            for batch in results:
                seen.append(batch)
    finally:
        store.close()
    return batches, seen


def test_results_that_fail_while_the_cluster_is_up_are_stopped_on_it() -> None:
    batches, seen = watched(gone=False)
    assert seen == [1] and batches.closed


def test_results_that_fail_with_the_cluster_gone_are_not_stopped_on_it() -> None:
    """Stopping Ray Data's executor on a lost cluster waits on it (and a process still in that Ray call when the
    update disconnects is ended by Ray)."""
    batches, seen = watched(gone=True)
    assert seen == [1] and not batches.closed


def test_the_wait_for_a_lost_control_store_can_be_set_and_a_bad_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from picsift.core.ray_watch import CLUSTER_LOST_AFTER_S, LOST_AFTER_VARIABLE

    store = socket.create_server(("127.0.0.1", 0))
    address = "{}:{}".format(*store.getsockname())
    try:
        monkeypatch.delenv(LOST_AFTER_VARIABLE, raising=False)
        assert GcsWatch("c", address, on_lost=lambda: None).lost_after_s == CLUSTER_LOST_AFTER_S
        monkeypatch.setenv(LOST_AFTER_VARIABLE, "2.5")
        assert GcsWatch("c", address, on_lost=lambda: None).lost_after_s == 2.5
        for bad in ("soon", "0", "-1", "60", "nan"):
            monkeypatch.setenv(LOST_AFTER_VARIABLE, bad)
            with pytest.raises(ValueError, match=rf"\$PICSIFT_RAY_LOST_AFTER_S={bad!r}"):
                GcsWatch("c", address, on_lost=lambda: None)
    finally:
        store.close()
