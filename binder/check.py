"""Check the Binder configuration the way Binder builds it, without Docker.

1. **Detection**: when ``repo2docker`` is installed (``pip install jupyter-repo2docker``, in its own venv),
   ``repo2docker --no-build --debug`` must turn ``binder/`` into a Dockerfile that installs ``apt.txt``,
   creates the conda environment from ``environment.yml`` and runs ``binder/postBuild``.
2. **Build**: the repository's tracked files are copied to a scratch folder, a fresh virtualenv stands in for
   the conda environment (same Python minor version; Node.js from PATH), and ``binder/postBuild`` runs there
   exactly as Binder runs it, from the repository root (``TORCH_PIP_ARGS=""``: pip's configured index, as this
   machine has no internet; on Binder the CPU-only torch index is used).
3. **Open**: in that environment ``notebooks/quickstart.ipynb`` runs top to bottom.

    python binder/check.py [--repo2docker /path/to/repo2docker] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, check=True, text=True, **kwargs)  # type: ignore[call-overload]


def detect(repo2docker: str) -> None:
    dockerfile = subprocess.run([repo2docker, "--no-build", "--no-run", "--debug", str(REPO)], text=True,
                                capture_output=True, check=True)
    text = dockerfile.stdout + dockerfile.stderr
    for needle in ("apt-get install --yes --no-install-recommends tuxpaint-stamps-default",
                   'env update -p ${NB_PYTHON_PREFIX} --file "binder/environment.yml"', "RUN ./binder/postBuild"):
        if needle not in text:
            raise SystemExit(f"repo2docker did not produce {needle!r}; its output:\n{text[-3000:]}")
    print("repo2docker: binder/ detected (apt.txt, environment.yml, postBuild)")


def build(scratch: Path) -> Path:
    repo = scratch / "repo"
    listing = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]  # what a clone would hold
    files = subprocess.run(listing, cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    env_dir = scratch / "env"
    run([sys.executable, "-m", "venv", str(env_dir)])
    env = {**os.environ, "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(env_dir),
           "TORCH_PIP_ARGS": "", "PIP_QUIET": "1"}
    env.pop("PYTHONPATH", None)
    started = time.perf_counter()
    run(["bash", "binder/postBuild"], cwd=repo, env=env)
    print(f"postBuild finished in {time.perf_counter() - started:.0f}s")
    python = env_dir / "bin" / "python"
    run([str(python), "-c", "import picsift, picsift.widgets; from picsift.widgets._base import PicsiftWidget; "
         "from picsift.index import DEFAULT_BACKEND, backend_class; backend_class(DEFAULT_BACKEND); "
         "import importlib.resources as r; assert r.files('picsift').joinpath('static/gallery.js').is_file()"],
        env=env)
    return repo


def open_quickstart(repo: Path, scratch: Path) -> None:
    env_dir = scratch / "env"
    env = {**os.environ, "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}", "PIP_QUIET": "1"}
    env.pop("PYTHONPATH", None)
    run([str(env_dir / "bin" / "pip"), "install", "nbclient", "nbformat", "nbconvert", "ipykernel"], env=env)
    run([str(env_dir / "bin" / "python"), "-m", "picsift", "demo", "--notebook", "notebooks/quickstart.ipynb",
         "--out", str(scratch / "out")], cwd=repo, env=env)
    print(f"quickstart ran: {scratch / 'out' / 'quickstart.html'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo2docker", default=shutil.which("repo2docker"), help="the repo2docker executable")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    if args.repo2docker:
        detect(args.repo2docker)
    else:
        print("repo2docker not installed: detection skipped (pip install jupyter-repo2docker)")
    scratch = Path(tempfile.mkdtemp(prefix="picsift-binder-"))
    try:
        repo = build(scratch)
        open_quickstart(repo, scratch)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print("binder configuration OK")


if __name__ == "__main__":
    main()
