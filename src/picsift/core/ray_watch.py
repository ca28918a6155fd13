"""Noticing that a Ray cluster is gone while an update waits on it (:class:`GcsWatch`).

Ray does not raise in Python when its head node goes away; it ends the process a minute later. This
module lets :mod:`.ray_embed` end the update first, with :class:`ClusterLostError`.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterable
from contextlib import suppress
from typing import Any

from .update import RemoteStopped

log = logging.getLogger(__name__)

#: Seconds the cluster's control store (GCS, on the head node) may stay unreachable before the update gives up on
#: the cluster. A network hiccup or a GCS restart (with GCS fault tolerance) lasts a few seconds and is ridden
#: out; it must stay well below Ray's own limit (``gcs_rpc_server_reconnect_timeout_s``, 60 s by default), after
#: which Ray ends the whole driver process (see :class:`GcsWatch`; so do not lower that one below ~2x this).
CLUSTER_LOST_AFTER_S = 10.0
#: The environment variable that sets another wait than :data:`CLUSTER_LOST_AFTER_S` (seconds, more than 0 and at
#: most 30: a flaky network may want longer, a test that kills the head shorter).
LOST_AFTER_VARIABLE = "PICSIFT_RAY_LOST_AFTER_S"
#: How often the driver checks that the control store still answers (a TCP connection to it, with this timeout).
_PROBE_EVERY_S = 1.0
#: Seconds an ending update waits for the thread that takes Ray's results to stop.
_JOIN_S = 10.0


def lost_after_s() -> float:
    """Seconds an unreachable control store is waited for: ``$PICSIFT_RAY_LOST_AFTER_S``, else
    :data:`CLUSTER_LOST_AFTER_S`; ``ValueError`` naming the variable when it is not a number in (0, 30]."""
    text = os.environ.get(LOST_AFTER_VARIABLE, "").strip()
    if not text:
        return CLUSTER_LOST_AFTER_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= 30:  # NaN too; 30: half of Ray's own limit (see CLUSTER_LOST_AFTER_S)
        raise ValueError(f"${LOST_AFTER_VARIABLE}={text!r}: give the seconds to wait for a Ray cluster's lost control "
                         "store, more than 0 and at most 30")
    return seconds


class ClusterLostError(RemoteStopped):
    """The Ray cluster went away during an update: its head node, or the way from this process to it.

    This process is disconnected from Ray by then. Ray may still end it about a minute after the loss (a Ray Data
    thread can stay blocked on the lost control store, and Ray ends a process in that state; see :class:`GcsWatch`);
    everything committed stays committed either way.
    """


class GcsWatch:
    """Whether the cluster's control store (GCS) still answers, judged as Ray does: can it be connected to.

    Ray does not tell Python that the GCS is gone. Its GCS client retries while its gRPC channel cannot connect
    and, after ``gcs_rpc_server_reconnect_timeout_s`` (60 s by default), logs "Failed to connect to GCS within 60
    seconds" and calls ``std::_Exit(EXIT_FAILURE)`` (``src/ray/gcs_rpc_client/rpc_client.h``, the
    ``server_unavailable_timeout_callback`` of ``GcsRpcClient``): no exception, no ``finally``, the process is gone,
    while calls waiting on the cluster wait until then. So the driver takes Ray's results on a thread of its own,
    checks the GCS while it waits, and disconnects well before then: ``ray.shutdown()`` ends the countdown of the
    driver's own GCS client, not that of a GCS call a Ray Data thread may be blocked in (:class:`ClusterLostError`).
    """

    def __init__(self, cluster: str, address: str, on_lost: Callable[[], None]) -> None:
        self.cluster, self.address, self._on_lost = cluster, address, on_lost
        self.lost = False
        host, _, port = address.rpartition(":")
        self._host, self._port = host.strip("[]"), int(port)
        self._failing_since: float | None = None
        self._checked = 0.0
        self.lost_after_s = lost_after_s()
        self.enabled = self.reachable()  # else not from here (a Ray Client's cluster): Ray Client reports a loss

    def reachable(self) -> bool:
        """One attempt to connect to the control store."""
        try:
            socket.create_connection((self._host, self._port), timeout=_PROBE_EVERY_S).close()
        except OSError:
            return False
        return True

    def check(self) -> None:
        """Disconnect and raise :class:`ClusterLostError` once the control store has not answered for a while."""
        now = time.monotonic()
        if not self.enabled or now - self._checked < _PROBE_EVERY_S:
            return
        self._checked = now
        if self.reachable():
            self._failing_since = None
        elif self._failing_since is None:
            self._failing_since = now
            log.warning("the Ray cluster's control store at %s does not answer; waiting %g s for it", self.address,
                        self.lost_after_s)
        elif now - self._failing_since >= self.lost_after_s:
            self.lost = True
            self._on_lost()  # disconnect now: Ray's own countdown would end this process
            raise ClusterLostError(f"lost the Ray cluster at {self.cluster!r}: its control store at {self.address} has "
                                   f"not answered for {now - self._failing_since:.0f} s (the head node is down or "
                                   "cannot be reached)")

    def follow(self, batches: Iterable[Any]) -> Generator[Any, None, None]:
        """``batches``, taken from Ray on a thread that a lost cluster leaves blocked until ``ray.shutdown()``."""
        handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
        stop = threading.Event()

        def hand(kind: str, value: Any = None) -> bool:
            while not stop.is_set():
                with suppress(queue.Full):
                    handoff.put((kind, value), timeout=_PROBE_EVERY_S)
                    return True
            return False

        def pump() -> None:
            gone = False
            try:
                if all(hand("batch", batch) for batch in batches):
                    hand("end")
            except BaseException as e:  # handed to the consumer, which raises it
                # An error with the control store unreachable is the cluster's loss (the consumer disconnects
                # then): stopping the executor would wait on the lost cluster, and Ray ends a process that is
                # still in a Ray call when it disconnects, before the update's error is printed.
                gone = self.enabled and not self.reachable()
                hand("error", e)
            finally:  # Ray Data's executor stops here, on this thread, before the consumer may disconnect
                if not (self.lost or gone):  # after a loss there is no cluster left to stop it on
                    getattr(batches, "close", lambda: None)()

        puller = threading.Thread(target=pump, name="picsift-ray-results", daemon=True)
        puller.start()
        try:
            while True:
                self.check()
                try:
                    kind, value = handoff.get(timeout=_PROBE_EVERY_S)
                except queue.Empty:
                    continue
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()
            # Let the thread close Ray Data's executor before the caller disconnects: a Ray call made after
            # ray.shutdown() makes Ray end the process, before the caller's error is even printed. After a loss
            # the thread is blocked on the lost cluster: it is not waited for.
            if not self.lost:
                puller.join(timeout=_JOIN_S)


__all__ = ["CLUSTER_LOST_AFTER_S", "LOST_AFTER_VARIABLE", "ClusterLostError", "GcsWatch", "lost_after_s"]
