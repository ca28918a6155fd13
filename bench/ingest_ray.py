"""``bench/ingest.py --ray``: picsift's update through a real Ray cluster on this machine versus in-process.

Same images, same model, same run: an in-process ``Library.update()``; then ``update(ray=ADDRESS)`` on a
one-node cluster (``ray start --head --num-cpus=1``, one actor); then again after a second node joined
(``ray start --address=... --num-cpus=1``, two actors). Each update starts from an empty workspace; the
Ray runs include starting the actors and loading the model in each (the "total" column); "steady" is
the rate between 10 % and 90 % of the images committed. The nodes are this benchmark's own processes,
killed by process id at the end (never ``ray stop``, which ends every Ray process of the machine).

Separately, the driver's commit rate: what the single writer sustains when vectors arrive already
computed (vectors fsynced, store rows and file rows committed per batch, as ``run_update`` does). It
caps the cluster: N workers at R images/s each need N * R below it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import numpy as np
from common import table

from picsift import Library
from picsift.core.catalog import Catalog, FileRow
from picsift.core.store import EmbeddingStore

RAY = Path(sys.executable).parent / "ray"


class LocalCluster:
    """Ray nodes on this machine, one CPU each, started and stopped by this process only."""

    def __init__(self) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="pib", dir="/tmp"))  # Ray's socket paths must stay short
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen[bytes]] = []

    def add_node(self) -> None:
        where = ["--head", f"--port={self.port}", "--include-dashboard=false"] if not self.nodes else [
            f"--address={self.address}"]
        with open(self.temp / f"node{len(self.nodes)}.log", "wb") as log:
            self.nodes.append(subprocess.Popen(
                [str(RAY), "start", "--block", *where, "--num-cpus=1", "--num-gpus=0", "--disable-usage-stats",
                 f"--temp-dir={self.temp / f'n{len(self.nodes)}'}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0")))
        deadline = time.monotonic() + 180
        while self._nodes_up() < len(self.nodes):
            if self.nodes[-1].poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"a Ray node did not start; see {self.temp}")
            time.sleep(0.5)

    def _nodes_up(self) -> int:
        status = subprocess.run([str(RAY), "status", f"--address={self.address}"], capture_output=True, text=True)
        return status.stdout.count(" node_") if status.returncode == 0 else 0

    def stop(self) -> None:
        import psutil

        for node in reversed(self.nodes):
            with suppress(psutil.NoSuchProcess):
                root = psutil.Process(node.pid)
                procs = [root, *root.children(recursive=True)]
                for proc in reversed(procs):
                    with suppress(psutil.NoSuchProcess):
                        proc.send_signal(signal.SIGKILL)
                psutil.wait_procs(procs, timeout=15)
        shutil.rmtree(self.temp, ignore_errors=True)


def timed_update(folder: Path, model: str, batch_size: int, tmp: Path, ray: str | None) -> dict[str, float]:
    """One update from an empty workspace: images/s in total and from the first committed image to the last."""
    stamps: list[float] = []
    workspace = Path(tempfile.mkdtemp(prefix="ws-", dir=tmp))
    try:
        with Library(folder, workspace=workspace, model=model, index="exact", batch_size=batch_size) as lib:
            _ = lib.embedder  # the driver's own model is loaded before the clock starts, in every contender
            started = time.perf_counter()
            report = lib.update(progress=False, ray=ray,
                                on_progress=lambda done, total: stamps.append(time.perf_counter()) if done else None)
            seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    n = report.embedded
    # Results come in blocks of a batch: take the rate between 10 % and 90 % of the images committed.
    low, high = int(0.1 * len(stamps)), int(0.9 * len(stamps))
    steady = (high - low) / max(stamps[high] - stamps[low], 1e-9) if high > low else float("nan")
    return {"n": n, "total": n / seconds, "steady": steady, "seconds": seconds}


def commit_rate(tmp: Path, dim: int, batch_size: int, n: int) -> float:
    """Images/s the driver commits when the vectors arrive computed: write_vectors + one transaction per batch."""
    folder = Path(tempfile.mkdtemp(prefix="commit-", dir=tmp))
    catalog = Catalog(folder / "catalog.sqlite")
    store = EmbeddingStore(catalog, folder / "model", "bench:commit", "bench:commit", dim)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"{i:032x}" for i in range(n)]
    started = time.perf_counter()
    for start in range(0, n, batch_size):
        part = slice(start, start + batch_size)
        rows = store.write_vectors(vectors[part])
        with catalog.transaction() as db:
            store.commit_rows(db, ids[part], rows)
            Catalog.upsert_files(db, [FileRow(f"img/{i}.jpg", 1000, 1, i, 640, 480, None) for i in ids[part]])
    seconds = time.perf_counter() - started
    catalog.close()
    shutil.rmtree(folder, ignore_errors=True)
    return n / seconds


def run(folder: Path, model: str, batch_size: int, dim: int, tmp: Path) -> None:
    n = sum(1 for p in folder.iterdir() if p.is_file())
    print(f"\nRay: {n} files, model {model}, batch {batch_size}", flush=True)
    results: dict[str, dict[str, float]] = {"in-process": timed_update(folder, model, batch_size, tmp, None)}
    print(f"  in-process: {results['in-process']['total']:.1f} img/s", flush=True)
    cluster = LocalCluster()
    try:
        cluster.add_node()
        results["Ray, 1 node"] = timed_update(folder, model, batch_size, tmp, cluster.address)
        print(f"  Ray 1 node: {results['Ray, 1 node']['total']:.1f} img/s", flush=True)
        cluster.add_node()
        results["Ray, 2 nodes"] = timed_update(folder, model, batch_size, tmp, cluster.address)
        print(f"  Ray 2 nodes: {results['Ray, 2 nodes']['total']:.1f} img/s", flush=True)
    finally:
        from picsift.core.ray_embed import disconnect

        disconnect()
        cluster.stop()
    base = results["in-process"]
    print("\nimages per second, whole update (actors start and load the model inside it) and steady "
          "(from 10 % to 90 % of the images committed):")
    print(table([[k, int(r["n"]), r["total"], r["steady"], f"{r['total'] / base['total']:.2f}x",
                  f"{r['steady'] / base['steady']:.2f}x"] for k, r in results.items()],
                ["run", "images", "total img/s", "steady img/s", "total vs in-process", "steady vs in-process"]))
    two, one = results["Ray, 2 nodes"], results["Ray, 1 node"]
    print(f"2 nodes / 1 node: total {two['total'] / one['total']:.2f}x, steady {two['steady'] / one['steady']:.2f}x")
    rows = [[b, commit_rate(tmp, dim, b, 20_000)] for b in (32, 256)]
    print("\nthe driver's commit rate (vectors computed elsewhere; 20,000 images of dim "
          f"{dim}, fsync per batch), images per second:")
    print(table(rows, ["batch", "commits img/s"]))
