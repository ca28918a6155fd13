"""Automatic updates: enable / disable, the schedule, file watching, partial results, two processes, the CLI."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import picsift
import picsift.service
from picsift.core.catalog import content_id
from picsift.errors import MissingDependencyError, ModelMismatchError

from .test_cli import picsift as run_cli


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``check()`` once it is truthy, else its last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def add_images(folder: Path, stamps_root: Path, category: str, n: int) -> list[Path]:
    added = []
    for path in sorted((stamps_root / category).rglob("*.png"))[:n]:
        target = folder / f"{category}-{path.name}"
        shutil.copy(path, target)
        added.append(target)
    return added


def distinct_images(folder: Path) -> int:
    return len({content_id(p.read_bytes()) for p in folder.rglob("*.png") if ".picsift" not in p.parts})


@pytest.fixture
def gates() -> Iterator[list[Gate]]:
    """Gates to release after the test, whatever happens (before services stop: see ``services``)."""
    held: list[Gate] = []
    yield held
    for gate in held:
        gate.released.set()


@pytest.fixture
def services(gates: list[Gate]) -> Iterator[list[picsift.Service]]:
    """Services to stop after the test, whatever happens."""
    started: list[picsift.Service] = []
    yield started
    for gate in gates:
        gate.released.set()
    for service in started:
        service.stop()


class Gate:
    """Holds an embedder's ``nth`` forward pass until released: an update caught in the middle."""

    def __init__(self, library: picsift.Library, nth: int = 2):
        self.entered, self.released = threading.Event(), threading.Event()
        embedder = library.embedder
        real, calls = embedder.embed_batch, [0]

        def embed_batch(pixels: Any) -> Any:
            calls[0] += 1
            if calls[0] == nth:
                self.entered.set()
                self.released.wait(120)
            return real(pixels)

        embedder.embed_batch = embed_batch  # type: ignore[method-assign]


def test_enable_embeds_in_the_background_then_search_is_complete(
    image_folder: Path, tiny_model: str, services: list[picsift.Service]
) -> None:
    service = picsift.enable(image_folder, model=tiny_model, interval=3600)
    services.append(service)
    assert service.running and service.status()["state"] in ("updating", "idle")
    assert service.wait(timeout=300)
    status = service.status()
    assert status["state"] == "idle" and status["runs"] == 1 and not status["failing"]
    assert status["last_report"].startswith("24 embedded") and status["next_run"] > time.time() + 3000
    library = service.library.status()
    assert library["enabled"] and library["interval"] == 3600 and not library["watch"]
    assert library["ready"] and library["embedded"] == 24 and library["last_update"] <= time.time()
    results = service.library.search("a red car", limit=5)
    assert len(results) == 5 and not results.partial and results.query["complete"] is True
    assert picsift.service.service_for(image_folder) is service


def test_searches_while_embedding_are_flagged_partial_and_progress_is_reported(
    image_folder: Path, tiny_model: str, stamps_root: Path, services: list[picsift.Service], gates: list[Gate],
    caplog: pytest.LogCaptureFixture
) -> None:
    from picsift.widgets import PromptBox

    library = picsift.Library(image_folder, model=tiny_model, index="exact", batch_size=8)
    library.update(progress=False)
    add_images(image_folder, stamps_root, "symbols", 40)
    gate = Gate(library)
    service = picsift.enable(library, interval=3600)
    services.append(service)
    gates.append(gate)
    assert gate.entered.wait(120)  # one batch of the 40 new images is in, the next one is held

    running = service.status()
    assert running["state"] == "updating" and running["progress"]["total"] == 40
    assert 0 < running["progress"]["done"] < 40
    status = library.status()
    assert status["updating"] and status["progress"]["total"] == 40
    assert status["searchable"] and not status["ready"] and status["pending"] > 0
    with caplog.at_level("WARNING", logger="picsift.library"):
        partial = library.search("a planet", limit=5)
    assert partial.partial and partial.query["complete"] is False
    searched = partial.query["searched_images"]
    assert searched == status["embedded"] == len(partial.scores) > 24
    assert partial.query["total_images"] > searched and "partial" in repr(partial)
    assert any("partial results" in r.message for r in caplog.records)
    box = PromptBox(library)  # the prompt lets you search what is there, saying it is not everything
    assert box.searchable and not box.ready and box.status["updating"]
    box.text = "a planet"
    box.submit()
    assert box.results is not None and box.results.partial
    box.close()
    from picsift.widgets import App

    app = App(library, update=False, explorer=False)  # and the app's gallery says so in its title
    app.search("a planet")
    assert f"partial: {app.results.query['searched_images']} of" in app.gallery.title

    gate.released.set()
    assert service.wait(timeout=300)
    status = library.status()
    assert status["ready"] and not status["updating"] and "progress" not in status
    assert status["embedded"] == distinct_images(image_folder)
    complete = library.search("a planet", limit=5)
    assert not complete.partial and complete.query["total_images"] == status["embedded"]


def test_a_file_added_while_watching_is_embedded_without_calling_update(
    image_folder: Path, tiny_model: str, stamps_root: Path, services: list[picsift.Service]
) -> None:
    embedded_per_run: list[int] = []
    service = picsift.enable(image_folder, model=tiny_model, interval=3600, watch=True, debounce=0.3,
                             on_run=lambda s: embedded_per_run.append(s.last_report.embedded))
    services.append(service)
    assert service.wait(timeout=300) and service.library.status()["embedded"] == 24
    assert service.library.status()["watch"]
    assert eventually(lambda: service.status()["watching"], timeout=30)  # events are being received
    add_images(image_folder, stamps_root, "space", 1)
    # embedded on the file's event, not on the hourly schedule (the bound is generous for a loaded machine)
    assert eventually(lambda: service.library.status()["embedded"] == 25, timeout=120)
    # the new image is committed before its run ends: wait for the run itself, which embedded just that one
    # (a late second event may add a run that finds nothing to do)
    assert service.wait(timeout=60)
    assert embedded_per_run[0] == 24 and sum(embedded_per_run[1:]) == 1


def test_without_watchfiles_watching_names_the_extra(
    image_folder: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "watchfiles", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "picsift\[watch\]"'):
        picsift.enable(image_folder, model=tiny_model, watch=True)


def test_the_schedule_updates_again_on_its_own(
    image_folder: Path, tiny_model: str, stamps_root: Path, services: list[picsift.Service]
) -> None:
    service = picsift.enable(image_folder, model=tiny_model, interval=1)
    services.append(service)
    assert service.wait(timeout=300)
    assert eventually(lambda: service.runs >= 3, timeout=30)
    add_images(image_folder, stamps_root, "space", 2)  # no watching: the schedule finds them
    assert eventually(lambda: service.library.status()["embedded"] == distinct_images(image_folder), timeout=30)
    assert service.status()["next_run"] is None or service.status()["next_run"] < time.time() + 1
    with pytest.raises(picsift.PicsiftError, match="interval=0"):
        picsift.Service(service.library, interval=0)


def test_update_now_runs_at_once_and_wait_waits_for_it(
    image_folder: Path, tiny_model: str, stamps_root: Path, services: list[picsift.Service]
) -> None:
    service = picsift.enable(image_folder, model=tiny_model, interval=3600)
    services.append(service)
    assert service.wait(timeout=300)
    add_images(image_folder, stamps_root, "space", 1)
    service.update_now()
    assert service.wait(timeout=60)
    assert service.runs == 2 and service.last_report is not None and service.last_report.embedded == 1


def test_disable_stops_automatic_updates_keeps_embeddings_and_enable_resumes(
    image_folder: Path, tiny_model: str, stamps_root: Path, services: list[picsift.Service]
) -> None:
    service = picsift.enable(image_folder, model=tiny_model, interval=1)
    services.append(service)
    assert service.wait(timeout=300)
    picsift.disable(image_folder)
    assert not service.running and service.status()["state"] == "stopped"
    assert picsift.service.service_for(image_folder) is None
    add_images(image_folder, stamps_root, "space", 1)
    time.sleep(3.5)  # three intervals: nothing runs any more
    with picsift.Library(image_folder, model=tiny_model) as library:
        status = library.status()
        assert not status["enabled"] and status["embedded"] == 24 and status["ready"]
        assert len(library.search("a dog", limit=3)) == 3  # embeddings kept, search works

    again = picsift.enable(image_folder, model=tiny_model)  # the recorded interval
    services.append(again)
    assert again.wait(timeout=300) and again.interval == 1
    report = again.last_report
    assert report is not None and report.embedded == 1 and report.unchanged == 24  # resumed, nothing re-embedded
    assert again.library.status()["enabled"]


def test_disable_from_another_process_stops_a_running_service(
    image_folder: Path, tiny_model: str, services: list[picsift.Service]
) -> None:
    service = picsift.enable(image_folder, model=tiny_model, interval=1)
    services.append(service)
    assert service.wait(timeout=300)
    assert run_cli("disable", str(image_folder), "--json").returncode == 0
    assert eventually(lambda: not service.running, timeout=10)


def test_a_failing_run_is_reported_and_the_service_keeps_going(
    image_folder: Path, tiny_model: str, tmp_path: Path, services: list[picsift.Service]
) -> None:
    service = picsift.enable(image_folder, model=tiny_model, workspace=tmp_path / "ws", interval=1)
    services.append(service)
    assert service.wait(timeout=300) and service.runs == 1
    away = image_folder.with_name("unmounted")
    image_folder.rename(away)  # an unmounted disk, say
    try:
        assert eventually(lambda: service.status()["failing"], timeout=10)
        status = service.status()
        assert "cannot read the image folder" in status["last_error"] and status["state"] != "stopped"
        assert service.library.status()["embedded"] == 24  # nothing was taken for deleted
    finally:
        away.rename(image_folder)
    assert eventually(lambda: not service.status()["failing"], timeout=10)
    assert service.running and service.last_report is not None
    assert service.last_report.embedded == 0 and service.last_report.removed == 0
    assert "cannot read" in (service.last_error or "")  # the last error stays visible, with its time
    assert service.status()["last_error_time"] is not None


def test_a_busy_workspace_is_skipped_quietly_and_retried(
    image_folder: Path, tiny_model: str, services: list[picsift.Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(picsift.service, "BUSY_RETRY", 0.2)
    other = picsift.Library(image_folder, model=tiny_model)
    with other._exclusive():  # another updater holds the workspace
        service = picsift.enable(image_folder, model=tiny_model, interval=3600)
        services.append(service)
        assert eventually(lambda: service.status()["busy_skips"] >= 1, timeout=10)
        status = service.status()
        assert not status["failing"] and status["last_error"] is None and service.runs == 0
    assert eventually(lambda: service.runs == 1, timeout=120)
    assert service.library.status()["embedded"] == 24
    other.close()


def test_a_second_process_cannot_update_a_workspace_being_updated(
    image_folder: Path, tiny_model: str, stamps_root: Path
) -> None:
    library = picsift.Library(image_folder, model=tiny_model, batch_size=8)
    library.update(progress=False)
    add_images(image_folder, stamps_root, "symbols", 40)
    gate = Gate(library)
    errors: list[BaseException] = []

    def update() -> None:
        try:
            library.update(progress=False)
        except BaseException as e:
            errors.append(e)

    worker = threading.Thread(target=update)
    worker.start()
    try:
        assert gate.entered.wait(120)
        second = run_cli("update", str(image_folder), "--model", tiny_model, "--json", check=False)
        assert second.returncode == 1 and second.stdout == ""
        assert second.stderr.startswith("picsift: error: another process is updating")
        assert second.stderr.strip().count("\n") == 0
        # ... and it sees the first one's progress
        seen = json.loads(run_cli("status", str(image_folder), "--model", tiny_model, "--json").stdout)
        assert seen["updating"] and seen["progress"]["total"] == 40 and not seen["ready"]
    finally:
        gate.released.set()
        worker.join(300)
    assert not errors
    distinct = distinct_images(image_folder)
    status = library.status()
    assert status["embedded"] == status["images"] == distinct and status["pending"] == 0 and not status["updating"]
    rows = library.catalog.db.execute("SELECT COUNT(*), COUNT(DISTINCT image_id) FROM embeddings WHERE model=?",
                                      (library.spec.identity(),)).fetchone()
    assert rows == (distinct, distinct)
    after = json.loads(run_cli("update", str(image_folder), "--model", tiny_model, "--json").stdout)
    assert after["embedded"] == 0 and after["added"] == 0 and after["removed"] == 0
    library.close()


def test_cli_update_enable_disable_and_status(image_folder: Path, tiny_model: str, tmp_path: Path) -> None:
    enabled = json.loads(run_cli("enable", str(image_folder), "--model", tiny_model, "--interval", "30",
                                 "--watch", "--json").stdout)
    assert enabled["embedded"] == 24 and enabled["enabled"] and enabled["interval"] == 30 and enabled["watch"]
    status = json.loads(run_cli("status", str(image_folder), "--model", tiny_model, "--json").stdout)
    assert status["enabled"] and status["interval"] == 30 and status["last_update"] > 0 and not status["updating"]
    updated = json.loads(run_cli("update", str(image_folder), "--model", tiny_model, "--json").stdout)
    assert updated["embedded"] == 0 and updated["unchanged"] == 24
    plain = run_cli("disable", str(image_folder)).stdout
    assert "automatic updates off" in plain and "embeddings kept" in plain
    status = json.loads(run_cli("status", str(image_folder), "--model", tiny_model, "--json").stdout)
    assert not status["enabled"] and status["embedded"] == 24 and status["interval"] == 30

    # a different model: refused in one line that says how to confirm, then confirmed
    import open_clip
    import torch

    torch.manual_seed(7)
    checkpoint = tmp_path / "other.pt"
    torch.save({"state_dict": open_clip.create_model("picsift-test-tiny", pretrained=None).state_dict()}, checkpoint)
    other = tiny_model.rsplit(":", 1)[0] + f":{checkpoint}"
    refused = run_cli("update", str(image_folder), "--model", other, check=False)
    assert refused.returncode == 1 and refused.stderr.strip().count("\n") == 0
    assert "embeds 24 images again" in refused.stderr and "--reembed" in refused.stderr
    with pytest.raises(ModelMismatchError, match="reembed=True"):
        picsift.enable(image_folder, model=other)  # refused at once, not in the background
    confirmed = json.loads(run_cli("index", str(image_folder), "--model", other, "--reembed", "--json").stdout)
    assert confirmed["embedded"] == 24 and confirmed["model"] == other


def next_line_with(lines: queue.Queue[str], text: str, timeout: float) -> str:
    """The next line holding ``text`` (other lines skipped); fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        if text in line:
            return line


def test_cli_watch_embeds_a_new_file_and_stops_on_ctrl_c(
    image_folder: Path, tiny_model: str, stamps_root: Path
) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "picsift", "watch", str(image_folder), "--model", tiny_model, "--interval", "3600",
         "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # SIGINT at its default, as in a terminal (a shell's background job, e.g. a CI runner's, starts with it
        # ignored, and Python then keeps ignoring Ctrl-C)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: queue.Queue[str] = queue.Queue()
    said: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or ()], daemon=True).start()
    threading.Thread(target=lambda: [said.put(line) for line in process.stderr or ()], daemon=True).start()
    try:
        first = json.loads(lines.get(timeout=300))
        assert first["ok"] and first["embedded"] == 24
        # said once file events are received: then a new file is seen
        assert "on file changes); Ctrl-C to stop" in next_line_with(said, "picsift: watching", timeout=60)
        add_images(image_folder, stamps_root, "space", 1)
        second = json.loads(lines.get(timeout=60))
        assert second["ok"] and second["embedded"] == 1 and second["added"] == 1
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) in (0, 130)
    finally:
        if process.poll() is None:
            process.kill()
    assert next_line_with(said, "stopped watching", timeout=10)
    with picsift.Library(image_folder, model=tiny_model) as library:
        assert library.status()["embedded"] == 25 and library.status()["enabled"]
