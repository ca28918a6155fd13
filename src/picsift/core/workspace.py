"""What a library's workspace records about itself: its status, the model it was embedded with (and the
refusal to switch models silently), the signed local index folders it opens, the lock that lets one process at
a time update it, and an update's bookkeeping around :func:`~picsift.core.update.run_update`."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from .. import signing
from ..embedding.decode import decode_image
from ..embedding.openclip import DEFAULT_MODEL, Embedder, pretrained_weights_available
from ..embedding.spec import OFFLINE_MODEL, ModelSpec, offline_model_available, parse_model_spec
from ..errors import ModelMismatchError, ModelUnavailableError, PicsiftError, WorkspaceBusyError, workspace_space
from ..reading import read_regular_file
from ..workspace_files import WorkspaceFiles
from .activity import running_update
from .catalog import WORKSPACE_DIRNAME, Catalog
from .catalog.embeddings import OBJECTS_SUFFIX, REGIONS_SUFFIX
from .files import FileActions
from .objects import drop_stale, embed_objects, live_objects
from .regions import region_pass
from .store import EmbeddingStore
from .update import ProgressCallback, UpdateReport, run_update

log = logging.getLogger(__name__)

#: A meta key present while an update runs, and left behind by one that was killed or failed.
UNFINISHED_KEY = "update_unfinished"
#: Seconds between automatic updates (see :mod:`picsift.service`) when the workspace has none recorded.
DEFAULT_INTERVAL = 600.0
#: The shortest interval between automatic updates (seconds): each one scans the whole folder.
MIN_INTERVAL = 1.0


def default_model() -> str:
    """The model used when none is named.

    :data:`DEFAULT_MODEL` (a standard CLIP) when its weights are cached or can be fetched; otherwise
    picsift's own offline model, announced in one line; otherwise an error naming ``--model``.
    """
    spec = parse_model_spec(DEFAULT_MODEL)
    ok, reason = pretrained_weights_available(spec)
    if ok:
        return DEFAULT_MODEL
    if offline_model_available():
        log.warning("%s: using picsift's offline model %r instead (--model to choose another)", reason, OFFLINE_MODEL)
        return OFFLINE_MODEL
    raise ModelUnavailableError(f"{reason}; choose a model with --model SPEC (Python: model=...)")


def open_workspace(root: str | os.PathLike[str],
                   workspace: str | os.PathLike[str] | None) -> tuple[Path, Path, Catalog]:
    """The image folder, the workspace (made if missing; default ``ROOT/.picsift``) and its catalog, or an error
    naming what is wrong with them."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise PicsiftError(f"image folder {root} does not exist or is not a folder")
    if not workspace and (root / WORKSPACE_DIRNAME).is_symlink():
        # ROOT/.picsift came with the folder: a link there would make picsift write wherever it points
        link = root / WORKSPACE_DIRNAME
        raise PicsiftError(
            f"workspace {link} is a symbolic link (to {os.readlink(link)!r}); picsift keeps its workspace in a "
            "real folder and follows no link to one: remove the link, or name the workspace you want "
            "(workspace=..., CLI: --workspace DIR)")
    # resolved before the checks below, so that no link can make the image folder pass for a workspace
    workspace = Path(workspace or root / WORKSPACE_DIRNAME).expanduser().resolve()
    if root.is_relative_to(workspace):
        where = "is the image folder" if root == workspace else f"holds the image folder {root}"
        raise PicsiftError(
            f"workspace {workspace} {where}: picsift writes and deletes its own files there, so it needs "
            f"a folder of its own; leave workspace out (default {root / WORKSPACE_DIRNAME}) or choose a "
            "new folder (CLI: --workspace DIR)"
        )
    try:
        workspace.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PicsiftError(
            f"cannot create workspace {workspace} ({e.strerror}); pass workspace=... (CLI: --workspace)"
        ) from e
    with workspace_space(workspace, "try again"):
        catalog = Catalog(workspace / "catalog.sqlite")
    return root, workspace, catalog


@contextmanager
def exclusive(workspace: Path) -> Iterator[None]:
    """Hold the workspace lock: one process at a time updates it or acts on its files."""
    from filelock import FileLock, Timeout

    lock = FileLock(WorkspaceFiles(workspace).lock_file("update.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout as e:
        raise WorkspaceBusyError(
            f"another process is updating {workspace} or acting on its files; wait for it to finish"
        ) from e
    try:
        yield
    finally:
        lock.release()


def update_workspace(
    catalog: Catalog, root: Path, workspace: Path, spec: Callable[[], ModelSpec], store: Callable[[], EmbeddingStore],
    embedder: Callable[[], Embedder], announce: ProgressCallback, *, reembed: bool, index_name: str,
    video_every: float, progress: bool, on_progress: ProgressCallback | None, ray: str | None, ray_send_files: bool,
    batch_size: int | None, object_store: Callable[[bool], EmbeddingStore | None] | None = None,
    objects: bool = True, region_store: Callable[[bool], EmbeddingStore | None] | None = None, regions: bool = False,
) -> UpdateReport:
    """One update of the workspace (see :meth:`picsift.Library.update`), called while holding :func:`exclusive`.

    Finishes interrupted file actions, refuses an unconfirmed model change (:func:`check_model`), records the
    settings and an unfinished marker before embedding (so that even a killed first update names its model), runs
    :func:`~picsift.core.update.run_update` (on a Ray cluster with ``ray``, see :mod:`picsift.core.ray_embed`), then
    records ``last_update`` and ``last_report`` and clears the marker. ``spec``, ``store`` and ``embedder`` are
    called when needed, so a refused model change loads no model; ``announce`` publishes the progress to other
    processes. ``object_store(create)`` gives the model's object store (None when ``create`` is False and it has
    none yet): with ``objects``, labelled objects are embedded after the images (see :mod:`picsift.core.objects`);
    without, only the vectors of objects that are gone are dropped. ``region_store`` likewise gives the region
    store: with ``regions``, every image's regions are embedded too (see :mod:`picsift.core.regions`).
    """
    FileActions(catalog, root).recover()
    check_model(catalog, spec(), lambda ids: estimate_embedding(catalog, root, embedder, ids), reembed=reembed)
    store().remove_stray_files()
    with catalog.transaction() as db:
        _record_settings(catalog, db, spec(), index_name, video_every)
        catalog.set_meta(UNFINISHED_KEY, repr(time.time()), db)  # until it finishes
        if region_store is not None:  # now: a killed update with regions is finished with them
            catalog.set_meta("regions", "1" if regions else "0", db)

    def report_progress(done: int, total: int) -> None:
        announce(done, total)
        if on_progress is not None:
            on_progress(done, total)

    remote = None
    if ray is not None:
        from . import ray_embed

        remote = partial(ray_embed.embed_on_ray, ray, spec().text, root, batch_size=batch_size,
                         send_files=ray_send_files, prepare=embedder().preparer.prepare,
                         image_size=embedder().image_size)
    report = run_update(catalog, store(), embedder(), root, [workspace], progress=progress,
                        on_progress=report_progress, frames_dir=workspace / "frames", video_every=video_every,
                        remote=remote)
    # no labelled object, no object store: a library without labels gets no empty one
    objects_store = object_store(objects and bool(catalog.labels.object_classes())) if object_store else None
    if objects_store is not None and objects:
        objects_store.remove_stray_files()
        crops = None
        if ray is not None:  # the crops are cut and embedded on the cluster too
            from . import ray_objects

            crops = partial(ray_objects.embed_objects_on_ray, ray, spec().text, root, batch_size=batch_size,
                            send_files=ray_send_files)
        found = embed_objects(catalog, objects_store, None if crops else embedder(), root, progress=progress,
                              remote=crops, batch_size=batch_size)
        report.objects, report.objects_skipped = found.embedded, found.skipped
    elif objects_store is not None:
        drop_stale(catalog, objects_store, live_objects(catalog))
        objects_store.compact_if_sparse()
    if region_store is not None:
        region_pass(catalog, region_store(regions), embedder, root, regions, report, progress=progress)
    with catalog.transaction() as db:
        _record_settings(catalog, db, spec(), index_name, video_every)
        catalog.set_meta("last_update", repr(time.time()), db)
        catalog.set_meta("last_report", report.summary(), db)
        catalog.delete_meta(UNFINISHED_KEY, db)
    return report


def _record_settings(catalog: Catalog, db: Any, spec: ModelSpec, index_name: str, video_every: float) -> None:
    """The model, index and video sampling this workspace is updated with (read when they are not given)."""
    catalog.set_meta("video_every", repr(video_every), db)
    catalog.set_meta("model", spec.text, db)
    catalog.set_meta("model_identity", spec.identity(), db)
    catalog.set_meta("index", index_name, db)


def check_model(catalog: Catalog, spec: ModelSpec, estimate: Callable[[list[str]], str], *,
                reembed: bool = False) -> None:
    """Refuse a model change that would embed images again, unless ``reembed`` confirms it (see
    :meth:`picsift.Library.check_model`); ``estimate`` says how long embedding some ids again takes."""
    previous_spec = catalog.get_meta("model")
    if not previous_spec:
        return
    previous = catalog.get_meta("model_identity") or catalog.embeddings.latest_identity(previous_spec)
    identity = spec.identity()
    if previous is None or previous == identity:
        return
    again = catalog.embeddings.missing_from(identity, previous)
    if not again:  # back to a model whose embeddings are all there: only new images get embedded
        return
    if reembed:
        if previous_spec == spec.text:
            log.warning("new weights of %s: embedding %d images again (the earlier embeddings are kept)",
                        spec.text, len(again))
        else:
            log.warning("model changed from %s to %s: embedding %d images again (the embeddings of %s are kept)",
                        previous_spec, spec.text, len(again), previous_spec)
        return
    if previous_spec == spec.text:  # the same name, new weights (e.g. a new picsift-offline)
        raise ModelMismatchError(
            f"this workspace was embedded with an earlier version of {previous_spec}; the installed one "
            f"embeds {len(again)} images again{estimate(again)} (the earlier embeddings are kept). "
            f"Confirm with update(reembed=True) (CLI: picsift update FOLDER --reembed)"
        )
    raise ModelMismatchError(
        f"this workspace was embedded with {previous_spec}; switching to {spec.text} embeds "
        f"{len(again)} images again{estimate(again)} (the embeddings of {previous_spec} are kept). "
        f"Confirm with update(reembed=True) (CLI: picsift update FOLDER --model {spec.text} --reembed), "
        "or open the library without model= to keep the current model"
    )


def estimate_embedding(catalog: Catalog, root: Path, embedder: Callable[[], Embedder], ids: list[str],
                       sample: int = 8) -> str:
    """", about 3 min at 120 images/s measured just now", from embedding a few of ``ids``."""
    try:
        paths = catalog.paths_for(ids[:sample])
        model = embedder()
        started: float | None = None
        for attempt in range(2):  # the first pass warms the model up and is not timed
            started = time.perf_counter() if attempt else None
            images = [decode_image(read_regular_file(root / p)[0], model.image_size).image
                      for p in paths.values()]
            if not images:
                return ""
            model.embed_images(images if attempt else images[:1])
        assert started is not None
        rate = len(paths) / max(time.perf_counter() - started, 1e-6)
    except Exception as e:  # an estimate is a courtesy; the refusal stands without it
        log.debug("no time estimate for re-embedding: %s", e)
        return ""
    seconds = len(ids) / rate
    return f", about {_duration(seconds)} at {rate:.1f} images/s measured just now"


def workspace_status(catalog: Catalog, workspace: Path, root: Path, model: str | None, spec: Callable[[], ModelSpec],
                     index_name: str, collections: list[str]) -> dict[str, Any]:
    """Counts and settings, JSON-ready (see :meth:`picsift.Library.status`). Does not load the model.

    ``ready`` means complete: every image found is embedded and no update (in any process) is
    still embedding; ``searchable`` means some are (a search then says it is partial). While an
    update runs, ``updating`` is True and ``progress`` holds ``{done, total}`` files once the scan
    found what to read; ``pending`` counts images not embedded yet, including those the running
    update has still to read. ``interrupted``: the last update did not finish (it was killed or
    failed), so images it had still to read are not counted yet; the next update finishes the job.
    ``enabled``, ``interval``, ``watch``: automatic updates (see :func:`picsift.enable`);
    ``last_update``: when the last update finished (epoch seconds); ``embedded_objects``: labelled objects whose
    crop this model embedded (see :mod:`picsift.core.objects`); ``embedded_regions``: image regions it embedded
    (see :mod:`picsift.core.regions`).
    """
    files = catalog.file_table.counts()
    unique = catalog.file_table.image_count()
    models = catalog.embeddings.counts_by_spec()
    spec_ = spec() if model else None  # parsed once per Library: a checkpoint is hashed once
    embedded = objects = regions = 0
    if spec_ is not None:
        embedded = catalog.embeddings.count(spec_.identity())
        objects = catalog.embeddings.count(spec_.identity() + OBJECTS_SUFFIX)
        regions = catalog.embeddings.count(spec_.identity() + REGIONS_SUFFIX)
    running = running_update(workspace)
    pending = max(0, unique - embedded, remaining(running))
    meta: dict[str, Any] = catalog.meta_values(
        ["enabled", "interval", "watch", "last_update", "last_report", UNFINISHED_KEY])
    interrupted = UNFINISHED_KEY in meta and running is None
    automatic = {
        "enabled": meta.get("enabled") == "1",
        "interval": _number(meta.get("interval")),
        "watch": meta.get("watch") == "1",
        "last_update": _number(meta.get("last_update")),
        "last_report": meta.get("last_report"),
        "updating": running is not None,
        "interrupted": interrupted,
    }
    if running is not None and running.get("total") is not None:
        automatic["progress"] = {"done": int(running["done"]), "total": int(running["total"])}
    return {
        "root": str(root),
        "workspace": str(workspace),
        "model": model,
        "model_label": spec_.label() if spec_ else None,
        "index": index_name,
        "files": files[0],
        "images": unique,
        "embedded": embedded,
        "embedded_objects": objects,
        "embedded_regions": regions,
        "pending": pending,
        "skipped": files[2] + len(catalog.scan_problems()),
        "videos": catalog.videos.counts()[0],
        "video_frames": catalog.videos.counts()[1],
        "ready": bool(model) and embedded > 0 and pending == 0 and not interrupted,
        "searchable": bool(model) and embedded > 0,
        "models": {name: count for name, count in models},
        "collections": collections,
        **automatic,
    }


def automatic_settings(catalog: Catalog, interval: float | None, watch: bool | None) -> tuple[float, bool]:
    """The automatic-update ``interval`` and ``watch`` (see :mod:`picsift.service`); ``None``: as recorded in the
    workspace, else the default.

    A given ``interval`` below :data:`MIN_INTERVAL` is an error; a recorded one (the workspace may come from
    anyone) is raised to it with a warning, and one that is no number of seconds is replaced by the default.
    """
    interval = recorded_interval(catalog) if interval is None else checked_interval(interval)
    if watch is None:
        watch = catalog.get_meta("watch") == "1"
    return interval, watch


def checked_interval(interval: float) -> float:
    """``interval`` when it is a number of seconds from :data:`MIN_INTERVAL` on, else an error naming it."""
    if not (isinstance(interval, (int, float)) and math.isfinite(interval) and interval >= MIN_INTERVAL):
        raise PicsiftError(
            f"interval={interval!r}: automatic updates run at most every {MIN_INTERVAL:g} s (each one scans the "
            f"whole folder); give a number of seconds >= {MIN_INTERVAL:g} (CLI: --interval SECONDS), or None for "
            "no schedule")
    return float(interval)


def recorded_interval(catalog: Catalog) -> float:
    """The interval recorded in the workspace (else :data:`DEFAULT_INTERVAL`), never below :data:`MIN_INTERVAL`."""
    recorded = catalog.get_meta("interval")
    if not recorded:
        return DEFAULT_INTERVAL
    interval = _number(recorded)
    if interval is None:
        log.warning("the workspace records interval %r, not a number of seconds: using %g s (set another with "
                    "enable(interval=...), CLI: --interval)", recorded[:40], DEFAULT_INTERVAL)
        return DEFAULT_INTERVAL
    if interval < MIN_INTERVAL:
        log.warning("the workspace records interval %r, below the minimum of %g s between automatic updates: "
                    "using %g s", recorded[:40], MIN_INTERVAL, MIN_INTERVAL)
        return MIN_INTERVAL
    return interval


def record_automatic(catalog: Catalog, interval: float | None, watch: bool | None, enabled: bool) -> None:
    """Record the automatic-update settings in the workspace (``None``: keep the recorded value or default)."""
    interval, watch = automatic_settings(catalog, interval, watch)
    with catalog.transaction() as db:
        catalog.set_meta("enabled", "1" if enabled else "0", db)
        catalog.set_meta("interval", repr(interval), db)
        catalog.set_meta("watch", "1" if watch else "0", db)


def open_only_if_signed(folder: Path) -> None:
    """Delete a local index folder this user's picsift did not sign, before anything reads it.

    qdrant's local mode unpickles its points when it opens a folder, so a crafted folder in a shared
    workspace would run code; the index is only an accelerator, rebuilt from the embedding store.
    """
    if not (folder.exists() or folder.is_symlink()) or signing.verify_folder(folder):
        return
    log.warning("%s was not written by picsift for this user (or an update stopped while writing it): "
                "rebuilding it from the embedding store", folder)
    files = WorkspaceFiles(folder.parent)
    files.remove(folder.name)  # a link is removed, never followed
    files.remove(signing.signature_file(folder).name)


def remaining(running: dict[str, Any] | None) -> int:
    """Files a running update has still to read (0 while it scans: nothing is known to be missing yet)."""
    if running is None or running.get("total") is None:
        return 0
    return max(0, int(running["total"]) - int(running["done"]))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _number(recorded: str | None) -> float | None:
    """A number recorded in the workspace, or None when it is missing or no finite number (status never fails on
    what a shared workspace holds)."""
    try:
        value = float(recorded) if recorded else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None
