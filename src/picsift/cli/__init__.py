"""The ``picsift`` command line: index (update), enable, disable, watch, search, similar, sample, outliers,
duplicates, mistakes, health, status, collections, export, import, serve, demo.

Every command accepts ``--json`` for scripts (exact values: JSON escapes control characters itself). Output
for people escapes control characters, so a file name cannot move the cursor or print a line of its own.
Errors print one line and exit non-zero (``--debug`` shows the traceback). Each subcommand's work is one
handler in :mod:`picsift.cli.commands`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any

from ..analysis.sampling import SAMPLING_METHODS
from ..errors import PicsiftError, workspace_space
from ..index import available_backends
from ..labels.export import EXPORT_FORMATS
from ..labels.formats import FORMATS
from ..terminal import PrintableFormatter
from . import commands, serve
from .commands import say


def _library_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="the image folder, or a URL: s3://bucket/prefix, gs://..., https://... "
                                       '(pip install "picsift[cloud]")')
    parser.add_argument("--model", help="model spec, e.g. ViT-B-32:laion2b_s34b_b79k or ARCH:/path/to/ckpt.pt")
    parser.add_argument("--index", choices=available_backends(),
                        help="vector index backend (default: the workspace's, else ivf)")
    parser.add_argument("--qdrant-url", help="Qdrant server or cluster URL (with --index qdrant)")
    parser.add_argument("--workspace", help="workspace folder (default: FOLDER/.picsift; for a URL, a folder in the "
                                            "user's cache named after it)")
    parser.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                        help="for a URL: an option of its file system, e.g. endpoint_url=http://127.0.0.1:9000 or "
                             "anon=true (VALUE is read as JSON when it parses, else as text; repeatable)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: best available)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _search_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=20, help="at most this many results (default 20)")
    parser.add_argument("--min-score", type=float, help="keep scores >= this")
    parser.add_argument("--max-score", type=float, help="keep scores <= this")
    parser.add_argument("--negative", action="append", default=[], metavar="TEXT",
                        help="push results away from this prompt (repeatable)")
    parser.add_argument("--combine", choices=["mean", "max"], default="mean",
                        help="how several prompts or images combine (default mean)")
    parser.add_argument("--within", metavar="COLLECTION", help="search only this saved collection")
    parser.add_argument("--bins", type=int, default=20, help="histogram bins in --json output")
    parser.add_argument("--objects", action="store_true",
                        help="search the labelled objects (their boxes' crops), not the images")
    parser.add_argument("--regions", action="store_true",
                        help="score each image by its best region too (needs update --regions)")


def _update_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, help="images per forward pass")
    parser.add_argument("--reembed", action="store_true",
                        help="confirm embedding every image again after changing --model")
    parser.add_argument("--regions", action=argparse.BooleanOptionalAction, default=None, dest="embed_regions",
                        help="also embed 13 fixed regions of every image, for search --regions (default: as the "
                             "last update did)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="picsift", description="AI search over image folders with CLIP.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    subcommands = parser.add_subparsers(dest="command", required=True)

    for name in ("update", "index"):
        p = subcommands.add_parser(name, help="embed new and changed images, forget removed ones"
                                + (" (same as update)" if name == "index" else ""))
        _library_args(p)
        _update_args(p)
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                       help="embed on a Ray cluster: join ADDRESS (HOST:PORT), or when omitted the running cluster "
                            "ray.init() finds (RAY_ADDRESS, or `ray start` on this machine; picsift starts none) "
                            '(pip install "picsift[ray]")')
        p.add_argument("--ray-send-files", action="store_true",
                       help="with --ray: the workers cannot see FOLDER, so send them the files' bytes")
        p.set_defaults(handler=commands.update)

    p = subcommands.add_parser("enable", help="turn automatic updates on (records the settings) and update once")
    _library_args(p)
    p.add_argument("--interval", type=float, help="seconds between updates (default: as recorded, else 600)")
    p.add_argument("--watch", action="store_true", help="also update soon after files change")
    _update_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=commands.update)

    p = subcommands.add_parser("disable", help="turn automatic updates off; the embeddings stay")
    _library_args(p)
    p.set_defaults(handler=commands.disable)

    p = subcommands.add_parser("watch", help="keep a folder up to date until Ctrl-C: one line per update")
    _library_args(p)
    p.add_argument("--interval", type=float, help="seconds between re-scans (default: as recorded, else 600)")
    p.add_argument("--no-events", action="store_true", help="re-scan on the schedule only, not on file changes")
    _update_args(p)
    p.set_defaults(handler=commands.watch)

    p = subcommands.add_parser("search", help="search by a text prompt")
    _library_args(p)
    p.add_argument("prompt", nargs="+", help="the text prompt (several: combined with --combine)")
    _search_args(p)
    p.set_defaults(handler=commands.search)

    p = subcommands.add_parser("similar", help="search by one or several images (paths or ids)")
    _library_args(p)
    p.add_argument("images", nargs="+", help="image paths or ids")
    _search_args(p)
    p.add_argument("--exclude-references", action="store_true", help="leave the query images out")
    p.set_defaults(handler=commands.search)

    p = subcommands.add_parser("sample", help="a diverse sample of the images (for labelling)")
    _library_args(p)
    p.add_argument("--method", choices=SAMPLING_METHODS, default="random",
                   help="random (evenly across clusters), centroids, kcenter (farthest point) or typical")
    p.add_argument("--n", type=int, default=50, help="how many images (default 50)")
    p.add_argument("--clusters", type=int, help="k-means clusters (default sqrt(n/2) for random, else N)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--within", metavar="COLLECTION", help="sample only this saved collection")
    p.add_argument("--exclude", metavar="COLLECTION", help="leave out (and count as covered) this collection")
    p.add_argument("--exclude-labelled", action="store_true", help="leave out images with objects or tags")
    p.set_defaults(handler=commands.sample)

    p = subcommands.add_parser("outliers", help="the images least like any other (becomes the temporary collection)")
    _library_args(p)
    p.add_argument("--n", type=int, default=50, help="how many images (default 50)")
    p.add_argument("--k", type=int, default=10, help="nearest neighbours each image is compared with (default 10)")
    p.add_argument("--within", metavar="COLLECTION", help="only this saved collection")
    p.add_argument("--save", metavar="NAME", help="also save the result as collection NAME")
    p.set_defaults(handler=commands.outliers)

    p = subcommands.add_parser("duplicates", help="groups of near-identical images (becomes the temporary collection)")
    _library_args(p)
    p.add_argument("--threshold", type=float, default=None,
                   help="cosine similarity to join two images (default: the model's, 0.95)")
    p.add_argument("--within", metavar="COLLECTION", help="only this saved collection")
    p.add_argument("--save", metavar="NAME", help="also save the result as collection NAME")
    p.set_defaults(handler=commands.duplicates)

    p = subcommands.add_parser("mistakes", help="labels most likely wrong first (becomes the temporary collection)")
    _library_args(p)
    p.add_argument("--field", required=True,
                   help="where the classes are: an image tag name, folder, folder:2, objects (each labelled "
                        "object) or objects:image (each image's most frequent object class)")
    p.add_argument("--limit", type=int, default=20, help="how many images (default 20)")
    p.set_defaults(handler=commands.mistakes)

    p = subcommands.add_parser("health", help="a dataset health report: label mistakes, duplicates, leaks, outliers")
    _library_args(p)
    p.add_argument("--field", help="where the classes are: an image tag name, folder, folder:2 or objects:image "
                   "(object checks run whenever objects are embedded)")
    p.add_argument("--split", help="where the splits are (train/val/test...): an image tag name or folder level")
    p.add_argument("--show", type=int, default=3, help="images shown per finding (default 3)")
    p.set_defaults(handler=commands.health)

    p = subcommands.add_parser("status", help="what is indexed, with which model")
    _library_args(p)
    p.add_argument("--skipped", action="store_true", help="list files that could not be embedded")
    p.set_defaults(handler=commands.status)

    p = subcommands.add_parser("collections", help="list saved collections, or save the last search")
    _library_args(p)
    p.add_argument("--save", metavar="NAME", help="save the last search as NAME")
    p.add_argument("--delete", metavar="NAME", help="delete the collection NAME")
    p.add_argument("--rerun", metavar="NAME", help="make collection NAME again from its recipe (query, filters...)")
    p.set_defaults(handler=commands.collections)

    p = subcommands.add_parser("export", help="write a collection as CSV, Parquet or a labelled project")
    _library_args(p)
    p.add_argument("--collection", default="_temporary", metavar="NAME",
                   help="the collection to export (default: the last search)")
    p.add_argument("--format", required=True, choices=list(EXPORT_FORMATS),
                   help="csv/parquet: one row per image with labels; the others: images + annotations")
    p.add_argument("--out", required=True, help="output file (csv, parquet) or new folder (projects)")
    p.set_defaults(handler=commands.export)

    p = subcommands.add_parser("import", help="import a labelled project (images, tags, objects) into the library")
    _library_args(p)
    p.add_argument("project", help="the project folder (COCO, CVAT, Label Studio: or its annotation file; "
                                    "hf: a folder written by save_to_disk)")
    p.add_argument("--format", required=True, choices=list(FORMATS), help="the project's format")
    p.add_argument("--target", help="folder under FOLDER for the images (default: the project's name)")
    p.set_defaults(handler=commands.import_project)

    serve.add_parser(subcommands, _library_args, _open)

    p = subcommands.add_parser("demo", help="fetch the demo images, index them and run a few searches")
    p.add_argument("--model", help="model spec (default: the default model, else the offline one)")
    p.add_argument("--folder", help="use this image folder instead of the Tux Paint stamps")
    p.add_argument("--notebook", metavar="IPYNB", help="then run this notebook on the same images and model")
    p.add_argument("--out", default="demo-output", help="where the executed notebook goes (default demo-output)")
    p.set_defaults(handler=commands.demo, opens_library=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(PrintableFormatter("picsift: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, handlers=[handler])
    try:
        if not getattr(args, "opens_library", True):
            return int(args.handler(args))
        with _open(args) as library, workspace_space(library.workspace, "try again"):
            try:
                return int(args.handler(library, args))
            except PicsiftError as e:
                if args.debug:
                    raise
                # Said before the library closes: after a lost Ray cluster, Ray can end this process while it
                # cleans up (its own exit, status 1), and the one line must be out by then.
                say(f"picsift: error: {e}", file=sys.stderr, flush=True)
                return 1
    except KeyboardInterrupt:
        say("picsift: interrupted", file=sys.stderr)
        return 130
    except (PicsiftError, ValueError, OSError) as e:
        if args.debug:
            raise
        say(f"picsift: error: {e}", file=sys.stderr)
        return 1
    except sqlite3.Error as e:  # a damaged or locked catalog: one line, not a traceback
        if args.debug:
            raise
        say(f"picsift: error: the workspace's catalog: {e} (--debug shows the traceback)", file=sys.stderr)
        return 1


def _open(args: argparse.Namespace) -> Any:
    from ..library import Library

    options = {"url": args.qdrant_url} if getattr(args, "qdrant_url", None) else None
    return Library(args.folder, workspace=args.workspace, model=args.model, index=args.index,
                   index_options=options, device=args.device, batch_size=getattr(args, "batch_size", None),
                   storage_options=storage_options(getattr(args, "storage_option", [])) or None,
                   regions=getattr(args, "embed_regions", None))


def storage_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``--storage-option KEY=VALUE`` pairs as fsspec options; a VALUE that parses as JSON is taken as such."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise PicsiftError("--storage-option takes KEY=VALUE (an argument without a key and '=' was given)")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


if __name__ == "__main__":
    sys.exit(main())
