"""The ``picsift`` command line: index (update), enable, disable, watch, search, similar, sample, outliers,
duplicates, status, collections, export, import, demo.

Every command accepts ``--json`` for scripts (exact values: JSON escapes control characters itself). Output
for people escapes control characters, so a file name cannot move the cursor or print a line of its own.
Errors print one line and exit non-zero (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any

from .analysis.sampling import SAMPLING_METHODS
from .errors import PicsiftError, workspace_space
from .index import available_backends
from .terminal import PrintableFormatter, printable


def _library_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="the image folder")
    parser.add_argument("--model", help="model spec, e.g. ViT-B-32:laion2b_s34b_b79k or ARCH:/path/to/ckpt.pt")
    parser.add_argument("--index", choices=available_backends(), help="vector index backend (default: hnsw)")
    parser.add_argument("--qdrant-url", help="Qdrant server or cluster URL (with --index qdrant)")
    parser.add_argument("--workspace", help="workspace folder (default: FOLDER/.picsift)")
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


def _update_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, help="images per forward pass")
    parser.add_argument("--reembed", action="store_true",
                        help="confirm embedding every image again after changing --model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="picsift", description="AI search over image folders with CLIP.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    for name in ("update", "index"):
        p = commands.add_parser(name, help="embed new and changed images, forget removed ones"
                                + (" (same as update)" if name == "index" else ""))
        _library_args(p)
        _update_args(p)
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = commands.add_parser("enable", help="turn automatic updates on (records the settings) and update once")
    _library_args(p)
    p.add_argument("--interval", type=float, help="seconds between updates (default: as recorded, else 600)")
    p.add_argument("--watch", action="store_true", help="also update soon after files change")
    _update_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = commands.add_parser("disable", help="turn automatic updates off; the embeddings stay")
    _library_args(p)

    p = commands.add_parser("watch", help="keep a folder up to date until Ctrl-C: one line per update")
    _library_args(p)
    p.add_argument("--interval", type=float, help="seconds between re-scans (default: as recorded, else 600)")
    p.add_argument("--no-events", action="store_true", help="re-scan on the schedule only, not on file changes")
    _update_args(p)

    p = commands.add_parser("search", help="search by a text prompt")
    _library_args(p)
    p.add_argument("prompt", nargs="+", help="the text prompt (several: combined with --combine)")
    _search_args(p)

    p = commands.add_parser("similar", help="search by one or several images (paths or ids)")
    _library_args(p)
    p.add_argument("images", nargs="+", help="image paths or ids")
    _search_args(p)
    p.add_argument("--exclude-references", action="store_true", help="leave the query images out")

    p = commands.add_parser("sample", help="a diverse sample of the images (for labelling)")
    _library_args(p)
    p.add_argument("--method", choices=SAMPLING_METHODS, default="random",
                   help="random (evenly across clusters), centroids, kcenter (farthest point) or typical")
    p.add_argument("--n", type=int, default=50, help="how many images (default 50)")
    p.add_argument("--clusters", type=int, help="k-means clusters (default sqrt(n/2) for random, else N)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--within", metavar="COLLECTION", help="sample only this saved collection")
    p.add_argument("--exclude", metavar="COLLECTION", help="leave out (and count as covered) this collection")
    p.add_argument("--exclude-labelled", action="store_true", help="leave out images with objects or tags")

    p = commands.add_parser("outliers", help="the images least like any other (becomes the temporary collection)")
    _library_args(p)
    p.add_argument("--n", type=int, default=50, help="how many images (default 50)")
    p.add_argument("--k", type=int, default=10, help="nearest neighbours each image is compared with (default 10)")
    p.add_argument("--within", metavar="COLLECTION", help="only this saved collection")
    p.add_argument("--save", metavar="NAME", help="also save the result as collection NAME")

    p = commands.add_parser("duplicates", help="groups of near-identical images (becomes the temporary collection)")
    _library_args(p)
    p.add_argument("--threshold", type=float, default=None,
                   help="cosine similarity to join two images (default: the model's, 0.95; 0.99 for picsift-offline)")
    p.add_argument("--within", metavar="COLLECTION", help="only this saved collection")
    p.add_argument("--save", metavar="NAME", help="also save the result as collection NAME")

    p = commands.add_parser("status", help="what is indexed, with which model")
    _library_args(p)
    p.add_argument("--skipped", action="store_true", help="list files that could not be embedded")

    p = commands.add_parser("collections", help="list saved collections, or save the last search")
    _library_args(p)
    p.add_argument("--save", metavar="NAME", help="save the last search as NAME")
    p.add_argument("--delete", metavar="NAME", help="delete the collection NAME")
    p.add_argument("--rerun", metavar="NAME", help="make collection NAME again from its recipe (query, filters...)")

    p = commands.add_parser("export", help="write a collection as CSV, Parquet or a labelled project")
    _library_args(p)
    p.add_argument("--collection", default="_temporary", metavar="NAME",
                   help="the collection to export (default: the last search)")
    p.add_argument("--format", required=True, choices=["csv", "parquet", "coco", "yolo", "supervisely"],
                   help="csv/parquet: one row per image with labels; coco/yolo/supervisely: images + annotations")
    p.add_argument("--out", required=True, help="output file (csv, parquet) or new folder (projects)")

    p = commands.add_parser("import", help="import a labelled project (images, tags, objects) into the library")
    _library_args(p)
    p.add_argument("project", help="the project folder (COCO: a folder or an instances JSON file)")
    p.add_argument("--format", required=True, choices=["supervisely", "coco", "yolo"], help="the project's format")
    p.add_argument("--target", help="folder under FOLDER for the images (default: the project's name)")

    p = commands.add_parser("demo", help="fetch the demo images, index them and run a few searches")
    p.add_argument("--model", help="model spec (default: the default model, else the offline one)")
    p.add_argument("--folder", help="use this image folder instead of the Tux Paint stamps")
    p.add_argument("--notebook", metavar="IPYNB", help="then run this notebook on the same images and model")
    p.add_argument("--out", default="demo-output", help="where the executed notebook goes (default demo-output)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(PrintableFormatter("picsift: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, handlers=[handler])
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        _say("picsift: interrupted", file=sys.stderr)
        return 130
    except (PicsiftError, ValueError, OSError) as e:
        if args.debug:
            raise
        _say(f"picsift: error: {e}", file=sys.stderr)
        return 1
    except sqlite3.Error as e:  # a damaged or locked catalog: one line, not a traceback
        if args.debug:
            raise
        _say(f"picsift: error: the workspace's catalog: {e} (--debug shows the traceback)", file=sys.stderr)
        return 1


def _open(args: argparse.Namespace) -> Any:
    from .library import Library

    options = {"url": args.qdrant_url} if getattr(args, "qdrant_url", None) else None
    return Library(args.folder, workspace=args.workspace, model=args.model, index=args.index,
                   index_options=options, device=args.device, batch_size=getattr(args, "batch_size", None))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        run_demo(model=args.model, folder=args.folder, notebook=args.notebook, out=args.out)
        return 0
    with _open(args) as library, workspace_space(library.workspace, "try again"):
        if args.command == "watch":
            return _watch(library, args)
        if args.command == "disable":
            from .service import disable

            disable(library)
            if args.json:
                _print_json({"root": str(library.root), "enabled": False})
            else:
                _say(f"{library.root}: automatic updates off (embeddings kept; picsift enable FOLDER to resume)")
            return 0
        if args.command in ("index", "update", "enable"):
            if args.command == "enable":
                from .service import record_settings

                library.check_model(reembed=args.reembed)
                record_settings(library, interval=args.interval, watch=args.watch)
            report = library.update(progress=not (args.quiet or args.json), reembed=args.reembed)
            if args.json:
                _print_json({**report.__dict__, "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
                             "model": library.spec.text, "index": library.index_name,
                             **({k: library.status()[k] for k in ("enabled", "interval", "watch")}
                                if args.command == "enable" else {})})
            else:
                _say(f"{library.root}: {report.summary()} (model {library.spec.label()}, index {library.index_name})")
                if args.command == "enable":
                    status = library.status()
                    _say(f"automatic updates on: every {status['interval']:g} s"
                          + (" and on file changes" if status["watch"] else "")
                          + " while picsift watch FOLDER or picsift.enable(FOLDER) runs")
                for path, reason in report.skipped[:20]:
                    _say(f"  skipped {path}: {reason}")
                if len(report.skipped) > 20:
                    _say(f"  ... and {len(report.skipped) - 20} more (picsift status --skipped)")
            return 0
        if args.command in ("search", "similar"):
            options = dict(limit=args.limit, min_score=args.min_score, max_score=args.max_score,
                           negative_text=args.negative or None, combine=args.combine, within=args.within)
            if args.command == "search":
                results = library.search(args.prompt, **options)
            else:
                results = library.similar(args.images, exclude_references=args.exclude_references, **options)
            if args.json:
                _print_json({"query": results.query, "model": library.spec.text,
                             "results": results.df.to_dict(orient="records"),
                             "distribution": results.distribution(args.bins)})
            else:
                _print_results(results, library)
            return 0
        if args.command == "sample":
            sample = library.sample(args.n, method=args.method, clusters=args.clusters, seed=args.seed,
                                    within=args.within, exclude=args.exclude,
                                    exclude_labelled=args.exclude_labelled).df[["rank", "id", "path"]]
            if args.json:
                _print_json({"recipe": library.collections.recipe(), "results": sample.to_dict(orient="records")})
            else:
                _say(f"{len(sample)} images, {args.method} sample  (model {library.spec.label()})")
                for row in sample.itertuples():
                    _say(f"{row.rank:>4}  {row.path}")
            return 0
        if args.command in ("outliers", "duplicates"):
            if args.command == "outliers":
                table = library.outliers(args.n, args.k, within=args.within, save_as=args.save,
                                         progress=not args.json).df[["rank", "id", "path", "score"]]
            else:
                if args.threshold is None:
                    args.threshold = library.spec.duplicate_threshold()
                table = library.near_duplicates(args.threshold, within=args.within, save_as=args.save,
                                                progress=not args.json).df[["group", "id", "path", "similarity"]]
            if args.json:
                _print_json({"recipe": library.collections.recipe(), "results": table.to_dict(orient="records")})
            elif args.command == "outliers":
                _say(f"{len(table)} most isolated images (score: 1 - mean similarity to {args.k} nearest neighbours)")
                for row in table.itertuples():
                    _say(f"{row.rank:>4}  {row.score:6.3f}  {row.path}")
            else:
                _say(f"{table['group'].nunique()} groups of near-identical images (similarity >= {args.threshold})")
                for row in table.itertuples():
                    _say(f"{row.group:>4}  {row.similarity:6.3f}  {row.path}")
            return 0
        if args.command == "status":
            status = library.status()
            if args.skipped:
                status["skipped_files"] = [{"path": p, "reason": r} for p, r in library.skipped()]
            if args.json:
                _print_json(status)
            else:
                for key in ("root", "workspace", "model_label", "index", "files", "images", "embedded",
                            "pending", "skipped", "ready", "updating", "interrupted", "enabled", "interval", "watch",
                            "last_update", "collections"):
                    value = status[key]
                    if key == "last_update" and value is not None:
                        import time

                        value = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
                    _say(f"{key:>12}: {value}")
                if status.get("progress"):
                    _say(f"{'progress':>12}: {status['progress']['done']} / {status['progress']['total']} files")
                for item in status.get("skipped_files", []):
                    _say(f"  skipped {item['path']}: {item['reason']}")
            return 0
        if args.command == "collections":
            if args.save:
                library.collections.save(args.save)
            if args.delete:
                library.collections.delete(args.delete)
            if args.rerun:
                library.collections.rerun(args.rerun)
            table = library.collections.table()
            if args.json:
                _print_json(json.loads(table.to_json(orient="records", date_format="iso")))
            else:
                shown = table.apply(lambda column: column.map(printable) if column.dtype == object else column)
                for line in (shown.to_string(index=False) if len(table) else "no saved collections").splitlines():
                    _say(line)
            return 0
        if args.command == "export":
            out = library.export(args.collection, args.out, args.format)
            rows = len(library.collection(args.collection))
            if args.json:
                _print_json({"collection": args.collection, "format": args.format, "out": str(out), "images": rows})
            else:
                _say(f"wrote {rows} images of {args.collection!r} as {args.format} to {out}")
            return 0
        if args.command == "import":
            datasets = library.labels.import_project(args.project, args.format, target=args.target)
            report = library.update(progress=not args.json)
            table = library.labels.datasets()
            sizes = dict(zip(table["name"], table["size"], strict=True))
            if args.json:
                _print_json({"datasets": [{"name": d, "images": int(sizes[d])} for d in datasets],
                             "update": report.summary()})
            else:
                for name in datasets:
                    _say(f"imported {name}: {sizes[name]} images")
                _say(f"{library.root}: {report.summary()}")
            return 0
    raise AssertionError(args.command)


def _watch(library: Any, args: argparse.Namespace) -> int:
    """Run a :class:`~picsift.service.Service` in the foreground until Ctrl-C (or SIGTERM): exit 0."""
    import signal
    import threading
    import time

    from .service import enable

    def line(service: Any) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        report, failed = service.last_report, service.status()["failing"]
        if args.json:
            record = {"time": stamp, "ok": not failed, "error": service.last_error if failed else None}
            if report is not None and not failed:
                record.update(report.__dict__, skipped=[{"path": p, "reason": r} for p, r in report.skipped])
            print(json.dumps(record, default=str), flush=True)
        elif failed:
            _say(f"{stamp}  {library.root}: update failed: {service.last_error}", flush=True)
        else:
            _say(f"{stamp}  {library.root}: {report.summary()}", flush=True)

    service = enable(library, interval=args.interval, watch=not args.no_events, reembed=args.reembed,
                     on_run=line)
    what = f"every {service.interval:g} s" + ("" if args.no_events else " and on file changes")
    _say(f"picsift: watching {library.root} ({what}); Ctrl-C to stop", file=sys.stderr, flush=True)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while service.running and not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        service.stop()
    _say(f"picsift: stopped watching {library.root}", file=sys.stderr, flush=True)
    return 0


def _print_results(results: Any, library: Any) -> None:
    _say(f"{len(results)} of {len(results.scores)} images  (model {library.spec.label()})")
    for row in results.df.itertuples():
        _say(f"{row.rank:>4}  {row.score:6.3f}  {row.path}")


def _say(text: object, *, file: Any = None, flush: bool = False) -> None:
    """Print one line for people: control characters in it (from file names) are escaped, never obeyed."""
    print(printable(text), file=file or sys.stdout, flush=flush)


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    sys.exit(main())
