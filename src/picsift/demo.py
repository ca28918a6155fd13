"""The demo: real images (the Tux Paint stamps), indexed and searched.

The stamps (about 800 photos and drawings in 16 categories, GPL-2) come from the Debian package
``tuxpaint-stamps-default``, fetched without root by ``apt-get download`` and unpacked with
``dpkg -x`` into a cache outside any repository (``~/.cache/picsift/demo``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from filelock import FileLock

from .errors import ModelUnavailableError, PicsiftError
from .terminal import printable

log = logging.getLogger(__name__)

TUXPAINT_PACKAGE = "tuxpaint-stamps-default"
SYSTEM_STAMPS = Path("/usr/share/tuxpaint/stamps")
DEMO_PROMPTS = ["a bird", "a flower", "a house", "a musical instrument", "a picture of vehicles"]


def cache_dir() -> Path:
    return Path(os.environ.get("PICSIFT_CACHE", Path.home() / ".cache" / "picsift"))


def fetch_tuxpaint(cache: Path | None = None) -> Path:
    """The Tux Paint stamps folder (``CATEGORY/.../NAME.png`` with ``NAME.txt`` captions), fetched once."""
    target = (cache or cache_dir() / "demo") / "tuxpaint"
    stamps = target / "usr" / "share" / "tuxpaint" / "stamps"
    if stamps.is_dir():
        return stamps
    target.parent.mkdir(parents=True, exist_ok=True)
    # two processes fetching at once (two notebooks, parallel test workers) would each replace the other's copy
    with FileLock(str(target.with_name("tuxpaint.lock")), timeout=1800):
        if stamps.is_dir():  # fetched while this process waited
            return stamps
        _fetch_tuxpaint(target)
    return stamps


def _fetch_tuxpaint(target: Path) -> None:
    if SYSTEM_STAMPS.is_dir():  # installed system-wide (apt-get install, as Binder does): copy, as the
        partial = target.with_name("tuxpaint.partial")  # library's workspace needs a writable folder
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(SYSTEM_STAMPS, partial / "usr" / "share" / "tuxpaint" / "stamps")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        return
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise PicsiftError("fetching the demo images needs apt-get and dpkg (a Debian-based system)")
    with tempfile.TemporaryDirectory() as tmp:
        if _download(tmp) != 0:
            if os.geteuid() == 0:  # a fresh machine may have no package lists yet
                subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
            if _download(tmp) != 0:
                raise PicsiftError(f"apt-get download {TUXPAINT_PACKAGE} failed; is the Debian archive reachable?")
        deb = next(Path(tmp).glob("*.deb"))
        unpacked = Path(tmp) / "x"
        subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(unpacked), str(target))  # whole folder at once: no half-fetched cache


def _download(folder: str) -> int:
    return subprocess.run(["apt-get", "download", "-qq", TUXPAINT_PACKAGE], cwd=folder,
                          capture_output=True, check=False).returncode


def demo_model(model: str | None = None) -> str:
    """The model the demo uses: the one asked for, else the default (see :func:`picsift.default_model`)."""
    from .library import default_model

    if model:
        return model
    try:
        return default_model()
    except ModelUnavailableError as e:
        fallback = "ViT-B-32:random"
        log.warning("%s; the demo falls back to %s (RANDOM weights: results are meaningless)", e, fallback)
        return fallback


def run_demo(model: str | None = None, folder: str | None = None, notebook: str | None = None,
             out: str = "demo-output") -> None:
    """Fetch the stamps, index them, print a few searches, and run a notebook on them (the README's main job)."""
    root = Path(folder) if folder else fetch_tuxpaint()
    spec = demo_model(model)
    _print_searches(root, spec)
    if notebook:
        html = run_notebook(Path(notebook), Path(out), {"PICSIFT_NOTEBOOK_FOLDER": str(root),
                                                        "PICSIFT_NOTEBOOK_MODEL": spec})
        print(f"ran {notebook} on the same images: open {html} in a browser (or the .ipynb beside it in Jupyter)")


def run_notebook(path: Path, out: Path, env: dict[str, str]) -> Path:
    """Execute a notebook top to bottom with ``env`` set, keep it (with its pictures) in ``out`` as .ipynb and
    .html; returns the HTML file."""
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbconvert import HTMLExporter
    except ImportError as e:
        raise ImportError('running the notebooks needs nbclient and nbconvert: pip install "picsift[dev]"') from e
    if not path.is_file():
        raise PicsiftError(f"notebook {path} does not exist (the notebooks ship with the repository, not the wheel)")
    notebook = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend draws the pictures
    try:
        print(f"running {path} ...", flush=True)
        NotebookClient(notebook, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    out.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, out / path.name)
    html, _ = HTMLExporter().from_notebook_node(notebook)
    target = out / f"{path.stem}.html"
    target.write_text(html, encoding="utf-8")
    return target


def _print_searches(root: Path, spec: str) -> None:
    from .library import Library

    print(f"picsift demo: {printable(root)}\nmodel: {printable(spec)}")
    with Library(root, model=spec) as library:
        report = library.update(reembed=True)  # picsift's own demo cache: a new model version re-embeds it
        print(f"indexed: {report.summary()}")
        status = library.status()
        print(f"{status['embedded']} images embedded with {status['model_label']}, index {status['index']}\n")
        first = ""
        for prompt in DEMO_PROMPTS:
            results = library.search(prompt, limit=5)
            first = first or results.ids[0]
            print(f'search "{prompt}"  ({len(results.scores)} images scored, '
                  f"median score {float(results.distribution()['median']):.3f})")
            _print_table(results.df, root)
        results = library.similar(first, limit=5)
        print(f"similar to {printable(results.paths[0])}")
        _print_table(results.df, root)


def _print_table(df: object, root: Path) -> None:
    for row in df.itertuples():  # type: ignore[attr-defined]
        print(f"  {row.rank:>2}. {row.score:6.3f}  {printable(os.path.relpath(row.path, root))}")
    print()
