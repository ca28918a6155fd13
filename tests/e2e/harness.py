"""Run a real JupyterLab and drive it with Chromium (Playwright); shared by the e2e tests and bench/.

Chromium comes from Debian (``/usr/bin/chromium``); Playwright's own browser download is not used.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("PICSIFT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
#: JupyterLab settings for a quiet, predictable UI: no news pop-up, no update checks.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_notebook(path: Path, cells: list[str]) -> Path:
    notebook = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": f"cell{i}", "metadata": {}, "outputs": [],
                   "source": source} for i, source in enumerate(cells)],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook))
    return path


class JupyterLab:
    def __init__(self, root: Path, port: int, token: str, process: subprocess.Popen[bytes], log: Path,
                 app: str = "lab"):
        self.root, self.port, self.token, self.process, self.log, self.app = root, port, token, process, log, app

    def url(self, notebook: str) -> str:
        where = "lab/tree" if self.app == "lab" else "notebooks"
        return f"http://127.0.0.1:{self.port}/{where}/{notebook}?token={self.token}"


@contextmanager
def jupyterlab(root: Path, timeout: float = 120, app: str = "lab") -> Iterator[JupyterLab]:
    """JupyterLab (or with ``app="notebook"``, Jupyter Notebook 7) on 127.0.0.1 (random free port, random
    token) serving ``root``."""
    settings = root / ".lab-settings"
    for name, value in LAB_SETTINGS.items():
        target = settings / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(value))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(root / ".lab-ws"),
           "HF_HUB_OFFLINE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    log = root / "jupyterlab.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", app, "--no-browser", "--ip=127.0.0.1", f"--port={port}",
             f"--IdentityProvider.token={token}", "--allow-root", f"--ServerApp.root_dir={root}",
             *(["--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"] if app == "lab" else [])],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root,
        )
    lab = JupyterLab(root, port, token, process, log, app)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    tail = log.read_text()[-3000:]
                    raise TimeoutError(f"jupyter lab did not answer in {timeout}s:\n{tail}") from None
                time.sleep(0.3)
        yield lab
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def chromium(viewport: tuple[int, int] = (1500, 1500), color_scheme: str = "light") -> Iterator[Any]:
    """A Playwright page in Debian's Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, color_scheme=color_scheme)
            yield page
        finally:
            browser.close()


def drag_through(page: Any, points: list[tuple[float, float]], release: bool = True) -> None:
    """Press the mouse at the first point and move through the rest (a lasso outline); ``release=False``
    keeps the button down (to photograph a lasso being drawn)."""
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point)
    if release:
        page.mouse.up()


def open_and_run(page: Any, lab: JupyterLab, notebook: str, timeout_ms: int = 120_000) -> None:
    """Open ``notebook`` in JupyterLab, wait for its kernel to be idle, and run every cell."""
    page.goto(lab.url(notebook))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout_ms)
    if lab.app == "lab":  # Notebook 7 has no status bar; a cell run before the kernel is up waits for it
        idle = ("() => [...document.querySelectorAll('.jp-StatusBar-TextItem, .jp-StatusBar-GroupItem')]"
                ".some(e => /\\|\\s*Idle/.test(e.textContent))")
        page.wait_for_function(idle, timeout=timeout_ms)
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    for attempt in range(3):
        cells.first.locator(".jp-InputPrompt").click()
        page.keyboard.press("Escape")  # command mode: Shift+Enter runs the cell and moves on
        for _ in range(cells.count()):
            page.keyboard.press("Shift+Enter")
        try:  # a run started when the first prompt shows [*] or a number
            page.wait_for_function(
                "() => /\\[(\\*|\\d+)\\]/.test(document.querySelector('.jp-Notebook .jp-CodeCell .jp-InputPrompt')"
                ".textContent)", timeout=10_000)
            return
        except Exception:
            if attempt == 2:
                raise
