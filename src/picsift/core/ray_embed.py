"""Embedding on a Ray cluster: decode, preprocess and embed as Ray Data ``map_batches`` over an actor pool.

The driver (the process running :meth:`picsift.Library.update`) stays the only writer: it iterates over
the results that :func:`embed_on_ray` yields and commits them batch by batch exactly like a local update,
so a killed driver resumes without duplicates. Ray restarts a killed actor and retries its batch.

Each actor (:class:`_EmbedActor`) loads the model once from its spec string, then for every batch reads
the files (when the workers see the image folder at the same path: a shared file system), or the objects of a
library over a URL (each worker opens them through fsspec itself), or takes the
bytes that a reader pinned to the driver's node read for it (``send_files=True``), computes the content ids,
skips contents already embedded, decodes, resizes and crops on a few threads, and embeds (the per-image
and per-batch halves of the model's transform, as a local update runs them: ``Embedder.prepare`` and
``Embedder.embed_prepared``). A file that
cannot be read or decoded comes back with its reason, like in a local update.

Every node of the cluster is trusted with the images it reads and the results it returns, but each result is
checked before it is used (:func:`checked_results`): its path must be one the driver asked for (once) and its id
a content id; a vector must be finite. A result that is not is skipped with a warning (the next update reads that
file again).

A URL's objects: the actors get the URL of the library's root and its storage options (credentials, endpoint) as
arguments of their constructors, which Ray keeps in memory and hands to the actor's process; nothing of them is
written to the workspace or logged. Options the driver took from its own environment or ``~/.aws`` are not sent:
each worker finds its own there, as any machine reading the bucket does. A worker reads each object with its
version (:func:`picsift.core.storage.read_object_version`: ETag, retried with backoff, skipped and reported when
every attempt fails) and returns its size and stamp with the content id it hashed from the bytes; the driver
commits it only when that is the version its listing named, else reports it as changed and leaves it to the next
update (:func:`picsift.core.update.run_update`).

picsift starts no cluster itself: ``ray="auto"`` joins a running one (``RAY_ADDRESS``, or one started on this
machine with ``ray start``), since a Ray cluster's processes listen on the machine's network interfaces.

A lost cluster (its head node gone, or the way to it) ends the update with :class:`ClusterLostError` once
its control store (GCS) has not answered for :data:`.ray_watch.CLUSTER_LOST_AFTER_S`; everything that came
back before is committed. Without this watch Ray would end the driver process itself, 60 s later (see
:class:`.ray_watch.GcsWatch`).

Install Ray on every node together with picsift: ``pip install "picsift[ray]"``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PicsiftError
from ..workspace_files import IMAGE_ID
from .image_files import prepare_image, read_image_file, read_image_object
from .ray_watch import ClusterLostError, GcsWatch
from .storage import is_remote, remote_root
from .update import RemoteStopped

log = logging.getLogger(__name__)

#: ``ray=AUTO``: the cluster ``ray.init()`` finds (``RAY_ADDRESS``, else one ``ray start`` started on this machine);
#: never a new one.
AUTO = "auto"
#: Files read and sent per task on the driver's node when the workers cannot see the image folder.
SEND_BATCH = 64
_DECODE_THREADS = 4
_NONE = -1  # integer columns: no value (Arrow columns stay plain int64)


@dataclass
class EmbeddedFile:
    """One file as a worker left it: its state, content id, size and vector, or why it was skipped."""

    path: str
    size: int | None  # None: the file vanished before it could be read
    mtime_ns: int
    image_id: str | None
    width: int | None
    height: int | None
    error: str | None
    vector: np.ndarray | None  # None when the content was embedded already, or on an error


def connect(address: str) -> None:
    """Connect this process to a Ray cluster unless it is connected already.

    ``address`` is :data:`AUTO` (the cluster ``ray.init()`` finds; an error when there is none, rather than a new
    cluster listening on the network) or a cluster address such as ``"10.0.0.1:6379"``.
    """
    try:
        import ray
    except ImportError as e:
        raise PicsiftError('embedding on a Ray cluster needs Ray: pip install "picsift[ray]"') from e
    if ray.is_initialized():
        return
    if address == AUTO and not _running_cluster_found():
        raise PicsiftError(
            "no running Ray cluster found (RAY_ADDRESS is not set and no `ray start` cluster runs on this machine), "
            "and picsift starts none itself: a Ray cluster's processes listen on this machine's network interfaces. "
            "Start one (ray start --head --port=6379) and give its address (CLI: --ray 127.0.0.1:6379, Python: "
            "update(ray=\"127.0.0.1:6379\")), or update without Ray")
    try:
        ray.init(address=None if address == AUTO else address, logging_level=logging.WARNING,
                 log_to_driver=False, configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise PicsiftError(
            f"cannot join the Ray cluster at {address!r}: {e}; give a running cluster's address "
            f"(ray start --head prints it) or {AUTO!r} for ray.init() defaults"
        ) from e


def _running_cluster_found() -> bool:
    """Whether ``ray.init()`` would join a cluster (``RAY_ADDRESS``, or the one ``ray start`` last started here)."""
    if os.environ.get("RAY_ADDRESS"):
        return True
    try:
        from ray._private.services import canonicalize_bootstrap_address  # how ray.init() itself decides
    except ImportError:  # another Ray: only RAY_ADDRESS says for sure
        return False
    try:
        return canonicalize_bootstrap_address(None) is not None  # type: ignore[arg-type]  # None: find one
    except (ConnectionError, ValueError):
        return False


def checked_results(rows: Iterable[EmbeddedFile], asked: Collection[str], taken: set[str]) -> Iterator[EmbeddedFile]:
    """The results of the cluster that answer what the driver asked, each path once (recorded in ``taken``).

    A result for a path not asked for (or already answered), with an id that is not a content id, or with a
    vector that is not finite is skipped with a warning: a node of the cluster is not trusted to name files or
    ids. The file it stood for is read again by the next update.
    """
    for row in rows:
        problem = _result_problem(row, asked, taken)
        if problem is not None:
            log.warning("a Ray worker returned %s: skipped it (the next update reads that file again)", problem)
            continue
        taken.add(row.path)
        yield row


def _result_problem(row: EmbeddedFile, asked: Collection[str], taken: set[str]) -> str | None:
    if not isinstance(row.path, str) or row.path not in asked:
        return f"a result for {_shown(row.path)}, a path the driver did not ask for"
    if row.path in taken:
        return f"a second result for {_shown(row.path)}"
    if row.image_id is not None and not (isinstance(row.image_id, str) and IMAGE_ID.fullmatch(row.image_id)):
        return f"{_shown(row.image_id)} as the content id of {_shown(row.path)}, not an id (32 hex digits)"
    if row.image_id is None and row.size is not None and row.error is None:
        return f"no content id and no error for {_shown(row.path)}"
    if row.vector is not None and not (row.vector.ndim == 1 and np.isfinite(row.vector).all()):
        return f"a vector for {_shown(row.path)} that is not one row of finite numbers"
    return None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:120] + "..."


def disconnect() -> None:
    """Disconnect this process from its Ray cluster (and stop the cluster :func:`connect` started, if any)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def embed_on_ray(
    address: str,
    model: str,
    root: Path | Any,
    paths: list[str],
    embedded: set[str],
    *,
    batch_size: int | None = None,
    send_files: bool = False,
    actors: int | None = None,
    prepare: Callable[[Any], Any] | None = None,
    image_size: int | None = None,
    decode_stage: bool | None = None,
) -> Iterator[EmbeddedFile]:
    """Read, decode and embed ``paths`` (relative to ``root``) on the Ray cluster at ``address``.

    Parameters
    ----------
    address
        :data:`AUTO` or a cluster address (``HOST:PORT``); this process must run on a node of the cluster.
    model
        The model spec string; every actor loads it once.
    root
        The image folder, or a URL's path object (:func:`picsift.core.storage.remote_root`): then the workers read
        the objects from the URL, with its storage options (see the module's docstring).
    embedded
        Content ids that already have an embedding: their files are read and hashed, not embedded.
    batch_size
        Images per forward pass on an actor (default: 256 on a GPU, 32 on a CPU).
    send_files
        ``False``: the workers read the files at ``root`` themselves (a shared file system).
        ``True``: a reader pinned to the driver's node reads them and the bytes travel to the workers.
    actors
        Model replicas; default one per GPU when the cluster has GPUs, else one per CPU (half of them
        with a decode stage).
    prepare, image_size
        The model's per-image preparation and input side (``Embedder.preparer.prepare``, ``.image_size``),
        for the decode stage.
    decode_stage
        Decode, resize and crop in a stage of CPU actors on every node, whose 8-bit pixels travel to the
        model actors, instead of inside the model actors (default: when the cluster has GPUs, so that they
        only embed; then ``prepare`` and ``image_size`` are needed).

    Yields
    ------
    EmbeddedFile
        One per path, as results arrive (not in the order of ``paths``).
    """
    connect(address)
    import ray

    if not paths:
        return
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    decode_stage = bool(gpus) if decode_stage is None else decode_stage
    if decode_stage and (prepare is None or image_size is None):
        raise ValueError("a decode stage needs the model's prepare and image_size (Embedder.preparer.prepare, "
                         "Embedder.image_size)")
    count = actors or max(1, gpus or (cpus // 2 if decode_stage else cpus))
    batch_size = batch_size or (256 if gpus else 32)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver shows its own bar, per committed image
    dataset: ray.data.Dataset = ray.data.from_items([{"path": p} for p in paths],
                                                    override_num_blocks=max(1, len(paths) // batch_size))
    if send_files:  # one reader pinned to this node; mostly I/O, so it reserves no CPU an actor needs
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        dataset = dataset.map_batches(_ReadOnDriverNode, fn_constructor_kwargs=location(root),
                                      batch_size=SEND_BATCH, num_cpus=0, compute=ray.data.ActorPoolStrategy(size=1),
                                      scheduling_strategy=here)
    skip = ray.put(frozenset(embedded))
    if decode_stage:  # every CPU the model actors leave decodes for them, on any node
        dataset = dataset.map_batches(
            _Prepare, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=max(1, cpus - count)),
            num_cpus=1, fn_constructor_kwargs={**location(root), "embedded": skip,
                                               "prepare": prepare, "image_size": image_size})
    dataset = dataset.map_batches(
        _EmbedActor, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=count), num_cpus=1,
        num_gpus=1 if gpus else None,
        fn_constructor_kwargs={"model": model, **location(root), "embedded": skip,
                               "device": "cuda" if gpus else "cpu", "batch_size": batch_size})
    log.info("embedding %d files on Ray (%d model actors on %s%s)", len(paths), count, "GPUs" if gpus else "CPUs",
             ", a decode stage on the other CPUs" if decode_stage else "")
    watch = GcsWatch(address, ray.get_runtime_context().gcs_address, on_lost=disconnect)
    results = watch.follow(dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1))
    asked, taken = frozenset(paths), set[str]()
    try:
        with _quiet(("ray.data", logging.WARNING), ("ray.data._internal.progress", logging.ERROR)), closing(results):
            for batch in results:
                for row in checked_results(_rows(batch), asked, taken):
                    if row.size is None and not send_files and not is_remote(root) and (root / row.path).exists():
                        raise PicsiftError(
                            f"a Ray worker did not find {root / row.path}, which exists here: the workers do not see "
                            "the image folder at the same path. Share it at that path on every node, or send the "
                            "files from the driver (CLI: --ray-send-files, Python: update(ray=..., "
                            "ray_send_files=True)); every batch committed so far is kept")
                    yield row
    except (ConnectionError, ray.exceptions.RayError) as e:  # ConnectionError: a Ray Client lost its cluster
        failure = f"{type(e).__name__}: {e}"
        if isinstance(e, ConnectionError) or (watch.enabled and not watch.reachable()):
            disconnect()
            raise ClusterLostError(f"lost the Ray cluster at {address!r} ({failure})") from e
        raise RemoteStopped(f"the Ray cluster at {address!r} failed during the update ({failure})") from e


@contextmanager
def _quiet(*levels: tuple[str, int]) -> Iterator[None]:
    """Ray Data's per-run INFO lines (and its note that we turned its bars off) drown the update's own bar."""
    loggers = [(logging.getLogger(name), level) for name, level in levels]
    before = [logger.level for logger, _ in loggers]
    for logger, level in loggers:
        logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for (logger, _), level in zip(loggers, before, strict=True):
            logger.setLevel(level)


def location(root: Any) -> dict[str, Any]:
    """The actors' arguments naming where the images are: ``root`` (a folder or URL) and ``storage_options``
    (None for a folder; a URL's options, credentials included, travel only in memory: see the module's docstring)."""
    return {"root": str(root), "storage_options": dict(root.storage_options) if is_remote(root) else None}


def open_root(root: str, storage_options: dict[str, Any] | None) -> Path | Any:
    """On a worker: the folder, or the URL's path object with its storage options (see :func:`location`)."""
    return Path(root) if storage_options is None else remote_root(root, storage_options)


class _ReadOnDriverNode:
    """Reads files where the driver sees them (pinned to its node) and passes their bytes on."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None) -> None:
        self.root = open_root(root, storage_options)
        self.pool = ThreadPoolExecutor(_DECODE_THREADS, thread_name_prefix="picsift-ray-read")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        read = list(self.pool.map(lambda p: _read(self.root, p), batch["path"].tolist()))
        return {**batch, "size": np.array([r[0] for r in read], np.int64),  # other columns (objects') pass on
                "mtime_ns": np.array([r[1] for r in read], np.int64),
                "error": np.array([r[2] for r in read], object), "data": np.array([r[3] for r in read], object)}


class _Decoder:
    """Reads (or receives), hashes, decodes and prepares (resize, crop) batches of files on a few threads."""

    def __init__(self, root: str, embedded: Any, prepare: Callable[[Any], Any], image_size: int,
                 storage_options: dict[str, Any] | None = None) -> None:
        import ray

        self.root = open_root(root, storage_options)
        self.embedded: frozenset[str] = ray.get(embedded) if isinstance(embedded, ray.ObjectRef) else embedded
        self.prepare, self.image_size = prepare, image_size
        self.pool = ThreadPoolExecutor(_DECODE_THREADS, thread_name_prefix="picsift-ray-decode")

    def decode(self, batch: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[Any]]:
        """The result columns but the vectors, and each file's pixels (``None``: nothing to embed)."""
        paths = batch["path"].tolist()
        if "data" in batch:
            read = list(zip(batch["size"].tolist(), batch["mtime_ns"].tolist(), batch["error"].tolist(),
                            batch["data"].tolist(), strict=True))
        else:  # a file this worker does not find comes back as vanished; the driver checks it has (see embed_on_ray)
            read = list(self.pool.map(lambda p: _read(self.root, p), paths))
        prepared = list(self.pool.map(self._prepare, read))
        return {
            "path": np.array(paths, object),
            "size": np.array([r[0] for r in read], np.int64),
            "mtime_ns": np.array([r[1] for r in read], np.int64),
            "image_id": np.array([p[0] for p in prepared], object),
            "width": np.array([p[1] for p in prepared], np.int64),
            "height": np.array([p[2] for p in prepared], np.int64),
            "error": np.array([p[3] for p in prepared], object),
        }, [p[4] for p in prepared]

    def _prepare(self, read: tuple[int, int, str, bytes]) -> tuple[str, int, int, str, Any]:
        """(content id, width, height, error, pixels or None) for one read file."""
        size, _, error, data = read
        if size == _NONE or error:
            return "", _NONE, _NONE, error, None
        image = prepare_image(data, self.embedded, self.image_size, self.prepare)
        width, height = (_NONE, _NONE) if image.width is None or image.height is None else (image.width, image.height)
        return image.image_id, width, height, image.error or "", image.pixels


class _Prepare(_Decoder):
    """The CPU stage in front of GPU actors: decoded, cropped pixels travel on to :class:`_EmbedActor`.

    They travel as the 8-bit ``(H, W, 3)`` arrays ``prepare`` gives (150 KB for 224 px, a quarter of float32
    pixels); a model whose transform cannot be split sends its float tensors.
    """

    def __init__(self, root: str, embedded: Any, prepare: Callable[[Any], Any], image_size: int,
                 storage_options: dict[str, Any] | None = None) -> None:
        from PIL import Image

        super().__init__(root, embedded, prepare, image_size, storage_options)
        # the shape and type of every image's pixels, also for a batch without any (all embedded already), so
        # that Ray Data can put any batches together
        self.blank = np.asarray(prepare(Image.new("RGB", (image_size, image_size))))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        columns, pixels = self.decode(batch)
        stacked = np.zeros((len(pixels), *self.blank.shape), self.blank.dtype)
        for i, p in enumerate(pixels):
            if p is not None:
                stacked[i] = np.asarray(p)
        return {**columns, "pixels": stacked, "has_pixels": np.array([p is not None for p in pixels])}


class _EmbedActor:
    """One model replica: embeds the pixels a :class:`_Prepare` stage sent, or reads, decodes and embeds itself."""

    def __init__(self, model: str, root: str, embedded: Any, device: str, batch_size: int,
                 storage_options: dict[str, Any] | None = None) -> None:
        from ..embedding.openclip import Embedder

        self.embedder = Embedder(model, device=device, batch_size=batch_size)
        self.decoder = _Decoder(root, embedded, self.embedder.prepare, self.embedder.image_size, storage_options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        if "pixels" in batch:
            has = batch["has_pixels"].astype(bool)
            columns = {k: v for k, v in batch.items() if k not in ("pixels", "has_pixels")}
            pixels = batch["pixels"][has]
            if pixels.dtype != np.uint8:  # float tensors from a transform that cannot be split
                pixels = torch.from_numpy(np.ascontiguousarray(pixels))
        else:
            columns, prepared = self.decoder.decode(batch)
            has = np.array([p is not None for p in prepared])
            pixels = [p for p in prepared if p is not None]
        vectors = np.zeros((len(has), self.embedder.dim), np.float32)
        if has.any():
            vectors[has] = (self.embedder.embed_batch(pixels) if isinstance(pixels, torch.Tensor)
                            else self.embedder.embed_prepared(list(pixels)))
        return {**columns, "has_vector": has, "vector": vectors}


def _read(root: Path | Any, path: str) -> tuple[int, int, str, bytes]:
    """(size, mtime_ns, error, bytes) of one file, as a local update reads it; size :data:`_NONE` when it vanished.

    An object under a URL comes with the version read: its size and stamp (in ``mtime_ns``), as its listing gives.
    """
    file = read_image_object(root, path) if is_remote(root) else read_image_file(root, path)
    if file.state is None:
        return _NONE, 0, "", b""
    return file.state.size, file.state.mtime_ns, file.error or "", file.data


def _rows(batch: dict[str, np.ndarray]) -> Iterator[EmbeddedFile]:
    columns = zip(batch["path"].tolist(), batch["size"].tolist(), batch["mtime_ns"].tolist(),
                  batch["image_id"].tolist(), batch["width"].tolist(), batch["height"].tolist(),
                  batch["error"].tolist(), batch["has_vector"].tolist(), batch["vector"], strict=True)
    for path, size, mtime_ns, image_id, width, height, error, has_vector, vector in columns:
        yield EmbeddedFile(str(path), None if size == _NONE else int(size), int(mtime_ns), image_id or None,
                           None if width == _NONE else int(width), None if height == _NONE else int(height),
                           error or None, np.asarray(vector, np.float32) if has_vector else None)
