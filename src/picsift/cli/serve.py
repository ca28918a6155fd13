"""``picsift serve FOLDER``: the app as a web page, no notebook needed, on Voila.

Voila (voila-dashboards, a Jupyter project) turns a notebook into a page: it starts one kernel per
browser tab, renders the notebook's widget outputs with the standard Jupyter widget manager and
hides the code. picsift gives it a one-cell notebook that shows :func:`picsift.widgets.page.page`,
written into a private temporary folder that is Voila's root: no other file is reachable, and every
request needs the token.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import tempfile
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError
from .commands import say

NOTEBOOK = "picsift.ipynb"


def free_port(host: str) -> int:
    """A port nobody listens on at ``host`` now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port(host: str, port: int) -> None:
    """Fail now, naming the address, if ``host:port`` cannot be listened on (in use, no such address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise ValueError(f"cannot listen on {host}:{port} ({e.strerror}): choose another --port or --host, "
                             "or leave --port out for a free one") from e


def page_notebook(folder: Path, options: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """The one-cell notebook Voila runs per tab: the page for ``folder`` with the library ``options``.

    The options travel as JSON text (a string literal in the cell), never as code.
    """
    arguments = json.dumps({"folder": str(folder), **options})
    source = (
        "import json, os\n"
        "from picsift.widgets.page import page\n"
        f"os.chdir({str(cwd)!r})  # relative paths in the options mean what they meant to `picsift serve`\n"
        f"_options = json.loads({arguments!r})\n"
        "page(_options.pop('folder'), **_options)"
    )
    return {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "page", "metadata": {}, "outputs": [],
                   "source": source}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "title": f"picsift · {folder.name}"},
        "nbformat": 4, "nbformat_minor": 5,
    }


def serve(args: argparse.Namespace, open_library: Callable[[argparse.Namespace], Any]) -> int:
    """``serve``: check the library opens, then run Voila on the page until Ctrl-C."""
    try:
        from voila.app import Voila
    except ImportError as e:
        raise MissingDependencyError('picsift serve needs Voila: pip install "picsift[serve]"') from e
    folder = Path(args.folder).expanduser().resolve()
    if not folder.is_dir():
        raise ValueError(f"{args.folder!r} is not a folder: give the image folder to serve")
    port = args.port or free_port(args.host)
    check_port(args.host, port)
    with open_library(args) as library:  # errors (a bad --model, --index, workspace) show here, not in the page
        status = library.status()
        workspace = str(library.workspace)
    options: dict[str, Any] = {"workspace": workspace, "model": args.model, "index": args.index,
                               "device": args.device, "limit": args.limit}
    if args.qdrant_url:
        options["index_options"] = {"url": args.qdrant_url}
    token = args.token or secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="picsift-serve-") as root:
        notebook = Path(root) / NOTEBOOK
        notebook.write_text(json.dumps(page_notebook(folder, options, Path.cwd())))
        host_in_url = f"[{args.host}]" if ":" in args.host else args.host
        url = f"http://{host_in_url}:{port}/?token={token}"
        say(f"picsift: serving {folder} ({status['images']} images, {status['embedded']} embedded)")

        class PageServer(Voila):
            def launch_browser(self) -> None:  # Voila calls this once it listens (open_browser is always on)
                say(f"picsift: open {url}", flush=True)
                say("picsift: Ctrl-C stops the server", flush=True)
                if not args.no_browser:
                    threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()

        server = PageServer()
        server.initialize([
            str(notebook), f"--port={port}", f"--Voila.ip={args.host}", f"--token={token}",
            "--Voila.open_browser=True", "--Voila.port_retries=0", "--show_tracebacks=True",
            f"--Voila.log_level={'DEBUG' if args.debug else 'ERROR'}", f"--Voila.root_dir={root}",
        ])
        server.start()  # returns after Ctrl-C (or SIGTERM), once every kernel is shut down
    say("picsift: stopped")
    return 0


def add_parser(subcommands: Any, library_args: Callable[[argparse.ArgumentParser], None],
               open_library: Callable[[argparse.Namespace], Any]) -> None:
    p = subcommands.add_parser(
        "serve", help="the app as a web page (no notebook needed), until Ctrl-C",
        description="Serve the picsift app for FOLDER as a web page on Voila; each browser tab gets its own "
                    "kernel. Needs the token in the URL; listens on 127.0.0.1 unless --host says otherwise.")
    library_args(p)
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 lets other machines in)")
    p.add_argument("--token", help="the token the URL must carry (default: a new random one, printed)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--limit", type=int, default=1000, help="at most this many images in the gallery (default 1000)")
    p.set_defaults(handler=lambda args: serve(args, open_library), opens_library=False)

