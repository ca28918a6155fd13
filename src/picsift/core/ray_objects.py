"""Embedding labelled objects' crops on a Ray cluster, as :mod:`.ray_embed` embeds images.

One row per image goes to the cluster with its objects (id and box); an actor (:class:`_CropActor`) loads the model
once, reads the file (or the object of a library over a URL, as :mod:`.ray_embed` does; or takes the bytes a reader
on the driver's node sent, ``send_files=True``), checks it still
holds the image the objects were labelled on, decodes it once and cuts every crop as a local update does
(:func:`picsift.core.objects.crop_pixels`: the same margin, minimum size and model transform), and returns one row
per object: its vector, or why it was skipped. The driver checks every result
(:func:`picsift.core.objects.checked_crops`) and commits batch by batch, so a killed driver resumes without
duplicates, and a lost cluster ends the update with :class:`.ray_watch.ClusterLostError`, keeping every commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from .objects import CropJob, CropResult, crop_pixels
from .ray_embed import (
    _DECODE_THREADS,
    _NONE,
    _quiet,
    _read,
    _ReadOnDriverNode,
    connect,
    disconnect,
    location,
    open_root,
)
from .ray_watch import ClusterLostError, GcsWatch
from .update import RemoteStopped

log = logging.getLogger(__name__)

#: Images per task: each holds several objects, so fewer than the model's batch of crops.
IMAGES_PER_TASK = 8


def embed_objects_on_ray(address: str, model: str, root: Path | Any, jobs: list[CropJob], *,
                         batch_size: int | None = None, send_files: bool = False,
                         actors: int | None = None) -> Iterator[CropResult]:
    """Cut and embed ``jobs``' crops on the Ray cluster at ``address`` (see the module's docstring).

    ``model`` is the spec string every actor loads; ``batch_size`` crops per forward pass; ``send_files``: a reader
    on the driver's node sends the files' bytes (the workers do not see ``root``); ``actors``: model replicas
    (default one per GPU, else one per CPU). Yields one result per object, as they arrive.
    """
    connect(address)
    import ray

    if not jobs:
        return
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    count = actors or max(1, gpus or cpus)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver shows its own bar
    rows = [{"path": job.path, "image_id": job.image_id,
             "objects": json.dumps([[key, *map(float, box)] for key, box in job.objects])} for job in jobs]
    dataset: ray.data.Dataset = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // IMAGES_PER_TASK))
    if send_files:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        dataset = dataset.map_batches(_ReadOnDriverNode, fn_constructor_kwargs=location(root),
                                      batch_size=IMAGES_PER_TASK, num_cpus=0,
                                      compute=ray.data.ActorPoolStrategy(size=1), scheduling_strategy=here)
    dataset = dataset.map_batches(
        _CropActor, batch_size=IMAGES_PER_TASK, compute=ray.data.ActorPoolStrategy(size=count), num_cpus=1,
        num_gpus=1 if gpus else None,
        fn_constructor_kwargs={"model": model, **location(root), "device": "cuda" if gpus else "cpu",
                               "batch_size": batch_size or (256 if gpus else 32)})
    log.info("embedding the objects of %d images on Ray (%d model actors)", len(jobs), count)
    watch = GcsWatch(address, ray.get_runtime_context().gcs_address, on_lost=disconnect)
    results = watch.follow(dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1))
    try:
        with _quiet(("ray.data", logging.WARNING), ("ray.data._internal.progress", logging.ERROR)), closing(results):
            for batch in results:
                for key, error, has, vector in zip(batch["object_id"].tolist(), batch["error"].tolist(),
                                                   batch["has_vector"].tolist(), batch["vector"], strict=True):
                    yield CropResult(str(key), np.asarray(vector, np.float32) if has else None, error or None)
    except (ConnectionError, ray.exceptions.RayError) as e:
        failure = f"{type(e).__name__}: {e}"
        if isinstance(e, ConnectionError) or (watch.enabled and not watch.reachable()):
            disconnect()
            raise ClusterLostError(f"lost the Ray cluster at {address!r} ({failure})") from e
        raise RemoteStopped(f"the Ray cluster at {address!r} failed while embedding objects ({failure})") from e


class _CropActor:
    """One model replica: reads (or receives) each image once, cuts its objects' crops and embeds them."""

    def __init__(self, model: str, root: str, device: str, batch_size: int,
                 storage_options: dict[str, Any] | None = None) -> None:
        from ..embedding.openclip import Embedder

        self.embedder = Embedder(model, device=device, batch_size=batch_size)
        self.root = open_root(root, storage_options)
        self.pool = ThreadPoolExecutor(_DECODE_THREADS, thread_name_prefix="picsift-ray-crops")

    def _crops(self, job: tuple[str, str, str, int, str, bytes | None]) -> tuple[list[str], list[Any],
                                                                                list[tuple[str, str]]]:
        path, image_id, objects, size, error, data = job
        wanted = [(str(o[0]), (float(o[1]), float(o[2]), float(o[3]), float(o[4]))) for o in json.loads(objects)]
        if data is None:  # this worker reads the file (a shared file system)
            size, _, error, data = _read(self.root, path)
        if size == _NONE or error:
            reason = f"image unreadable: {error or f'{path} not found on this worker'}"
            return [], [], [(key, reason) for key, _ in wanted]
        return crop_pixels(data, image_id, wanted, self.embedder.prepare)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sent = "data" in batch
        jobs = list(zip(batch["path"].tolist(), batch["image_id"].tolist(), batch["objects"].tolist(),
                        batch["size"].tolist() if sent else [0] * len(batch["path"]),
                        batch["error"].tolist() if sent else [""] * len(batch["path"]),
                        batch["data"].tolist() if sent else [None] * len(batch["path"]), strict=True))
        keys, errors, pixels = [], [], []
        for cut, prepared, skipped in self.pool.map(self._crops, jobs):
            keys.extend(cut)
            errors.extend([""] * len(cut))
            pixels.extend(prepared)
            for key, reason in skipped:
                keys.append(key)
                errors.append(reason)
        vectors = np.zeros((len(keys), self.embedder.dim), np.float32)
        has = np.array([not e for e in errors], bool)
        if pixels:
            vectors[has] = self.embedder.embed_prepared(pixels)
        return {"object_id": np.array(keys, object), "error": np.array(errors, object), "has_vector": has,
                "vector": vectors}
