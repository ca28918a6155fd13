"""Shared fixtures: a small real open_clip model with random weights, and real images."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a hub download in tests
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers on two cores: one thread each, or the
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # workers' (and their kernels' and servers') thread pools fight


def worker_group(nodeid: str) -> str:
    """The tests that run one after another on one worker: a module's (its module-scoped fixtures, a JupyterLab, a
    moto server, an embedded library, are made once), and every module that starts Ray clusters together (two
    clusters of two nodes at once would starve each other on two cores)."""
    module = nodeid.split("::", 1)[0]
    return "ray" if "ray" in Path(module).stem.split("_") else module


#: Seconds the long groups took in a `make test` run (2026-12-07 08:30, `python bench/suite_log.py LOG`). The groups
#: are handed out longest first (the longest-processing-time rule), so that the two workers end close together: a
#: 42 s module started last had run alone for the suite's last 33 s. Groups not listed take under 10 s and follow in
#: the order pytest collected them.
DURATIONS = {
    "ray": 328, "tests/test_notebooks.py": 73, "tests/test_untrusted_workspace.py": 63,
    "tests/test_offline_search.py": 53, "tests/e2e/test_serve_in_browser.py": 49, "tests/test_crash_safety.py": 46,
    "tests/e2e/test_app_in_browser.py": 39, "tests/test_cli.py": 31, "tests/test_service.py": 27,
    "tests/test_score_codes.py": 24, "tests/e2e/test_explorer_in_browser.py": 20, "tests/test_offline_model.py": 18,
    "tests/e2e/test_notebook7_in_browser.py": 18, "tests/test_fast_python.py": 17,
    "tests/e2e/test_marimo_in_browser.py": 14, "tests/test_video.py": 13, "tests/test_health.py": 13,
    "tests/test_onnx_text.py": 12, "tests/test_objects.py": 11, "tests/test_index_persistence.py": 11,
    "tests/test_object_health.py": 10,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: -DURATIONS.get(worker_group(item.nodeid), 0))  # stable: within a group, and the rest


if importlib.util.find_spec("xdist"):
    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        """`make test` runs two pytest-xdist workers; each gets whole groups (:func:`worker_group`)."""
        from xdist.scheduler import LoadScopeScheduling

        config.option.loadscopereorder = False  # keep DURATIONS' order, not the groups' test counts

        class GroupScheduling(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return worker_group(nodeid)

        return GroupScheduling(config, log)


DATA = Path(__file__).parent / "data"
TINY_CONFIG = DATA / "picsift-test-tiny.json"


class _RayCluster:
    """The session's two-node Ray cluster, started when a module first needs it and stopped (only its own
    processes) as soon as the last test of the Ray group is done: its dozen idle processes and the actors Ray Data
    leaves behind would otherwise take CPU from the rest of that worker's tests until the session ends."""

    def __init__(self) -> None:
        self._stack: contextlib.ExitStack | None = None
        self._cluster: Any = None

    def get(self) -> Any:
        if self._stack is None:
            from .test_ray import start_cluster

            stack = contextlib.ExitStack()
            self._cluster = stack.enter_context(start_cluster(hide_a_folder=True))
            self._stack = stack
        return self._cluster

    def stop(self) -> None:
        stack, self._stack, self._cluster = self._stack, None, None
        if stack is not None:
            stack.close()


_RAY = _RayCluster()


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    """A real two-node Ray cluster on loopback, one CPU per node, whose second node hides a folder
    (``tests/test_ray.py``'s ``start_cluster``): one for every module of the Ray group (:func:`worker_group`)."""
    return _RAY.get()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield  # the test's own fixtures first (a module's, when the next test is in another module)
    if worker_group(item.nodeid) == "ray" and (nextitem is None or worker_group(nextitem.nodeid) != "ray"):
        _RAY.stop()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _RAY.stop()  # a session cut short


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Spec of a small real open_clip CLIP (2-layer ViT + 2-layer text transformer, random weights)
    saved to a checkpoint file and loaded back through the same path a user's checkpoint takes."""
    import open_clip
    import torch

    open_clip.add_model_config(TINY_CONFIG)
    torch.manual_seed(1234)
    model = open_clip.create_model(TINY_CONFIG.stem, pretrained=None)
    checkpoint = tmp_path_factory.mktemp("model") / "tiny.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    return f"{TINY_CONFIG}:{checkpoint}"


@pytest.fixture(scope="session")
def stamps_root() -> Path:
    """The Tux Paint stamps (real photos and drawings), fetched once into the user cache."""
    from picsift.demo import fetch_tuxpaint

    return fetch_tuxpaint()


def stamp_files(root: Path, categories: tuple[str, ...], per_category: int) -> list[Path]:
    files = []
    for category in categories:
        files.extend(sorted((root / category).rglob("*.png"))[:per_category])
    return files


def ids_by_folder(library: Any) -> dict[str, list[str]]:
    """A library's image ids grouped by the name of the folder holding them, in path order."""
    images = library.images()
    folders: dict[str, list[str]] = {}
    for path, image_id in zip(images["path"], images["id"], strict=True):
        folders.setdefault(Path(path).parent.name, []).append(image_id)
    return folders


@pytest.fixture
def image_folder(tmp_path: Path, stamps_root: Path) -> Path:
    """A folder of 24 real stamps from three categories, in subfolders per category."""
    folder = tmp_path / "images"
    for path in stamp_files(stamps_root, ("animals", "vehicles", "food"), 8):
        target = folder / path.relative_to(stamps_root).parts[0] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return folder
