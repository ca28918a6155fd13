"""On a CPU whose cores torch's forward pass uses, an update's decoding and forward passes take turns."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import picsift
import picsift.core.update
from picsift.core.image_files import CpuTurns


def test_no_picture_is_decoded_while_a_forward_pass_runs() -> None:
    turns = CpuTurns()
    decodes: list[tuple[float, float]] = []
    forwards: list[tuple[float, float]] = []
    stop = threading.Event()

    def decoder() -> None:
        while not stop.is_set():
            with turns.decoding():
                start = time.perf_counter()
                time.sleep(0.002)
                decodes.append((start, time.perf_counter()))

    threads = [threading.Thread(target=decoder) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(5):
            time.sleep(0.01)  # the decoders' turn
            with turns.forward():
                start = time.perf_counter()
                time.sleep(0.02)
                forwards.append((start, time.perf_counter()))
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    assert len(forwards) == 5
    overlapping = [(d, f) for d in decodes for f in forwards if d[0] < f[1] and f[0] < d[1]]
    assert not overlapping
    # Decoding went on between the forward passes, not only before the first or after the last.
    between = [d for d in decodes if forwards[0][1] <= d[0] and d[1] <= forwards[-1][0]]
    assert len(between) >= 4


def test_a_forward_pass_that_fails_gives_the_turn_back() -> None:
    turns = CpuTurns()
    with pytest.raises(RuntimeError), turns.forward():
        raise RuntimeError("model failed")
    done = threading.Event()

    def decode() -> None:
        with turns.decoding():
            done.set()

    thread = threading.Thread(target=decode)
    thread.start()
    thread.join(5)
    assert done.is_set()


def test_an_update_taking_turns_stores_the_same_vectors_as_one_that_overlaps(
    tmp_path: Path, image_folder: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    forwards = [0]
    real_forward = CpuTurns.forward

    def counted(self: CpuTurns):  # type: ignore[no-untyped-def]
        forwards[0] += 1
        return real_forward(self)

    monkeypatch.setattr(CpuTurns, "forward", counted)
    monkeypatch.setattr(picsift.core.update, "_cpu_turns", lambda embedder: CpuTurns())
    vectors = {}
    for name in ("turns", "overlap"):
        if name == "overlap":
            monkeypatch.setattr(picsift.core.update, "_cpu_turns", lambda embedder: None)
        library = picsift.Library(image_folder, workspace=tmp_path / name, model=tiny_model, batch_size=5)
        report = library.update(progress=False)
        assert report.embedded == 24 and not report.skipped
        snapshot = library.store.snapshot()
        vectors[name] = {i: snapshot.vectors(np.array([p]))[0] for i, p in snapshot.position.items()}
        library.close()
    assert forwards[0] == 5  # 24 images in batches of 5, each forward pass in its turn
    assert vectors["turns"].keys() == vectors["overlap"].keys()
    for image_id, vector in vectors["turns"].items():
        np.testing.assert_array_equal(vector, vectors["overlap"][image_id])


def test_turns_are_taken_only_when_torch_uses_every_core(tiny_model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    embedder = picsift.Embedder(tiny_model, device="cpu")
    monkeypatch.setattr(picsift.core.update, "_usable_cores", lambda: 4)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert isinstance(picsift.core.update._cpu_turns(embedder), CpuTurns)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert picsift.core.update._cpu_turns(embedder) is None  # two cores left free: decoding overlaps
    monkeypatch.setattr(embedder, "device", "cuda")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert picsift.core.update._cpu_turns(embedder) is None  # the GPU computes: the CPU is free to decode
