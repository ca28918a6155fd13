"""One handler per ``picsift`` subcommand: ``handler(library, args) -> exit status``.

:func:`picsift.cli.build_parser` binds each subcommand to its handler (``set_defaults(handler=...)``);
:func:`picsift.cli.main` opens the library and calls it. Output for people goes through :func:`say`, which
escapes control characters; ``--json`` output goes through :func:`print_json`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any

from ..terminal import printable


def say(text: object, *, file: Any = None, flush: bool = False) -> None:
    """Print one line for people: control characters in it (from file names) are escaped, never obeyed."""
    print(printable(text), file=file or sys.stdout, flush=flush)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _skipped(report: Any) -> list[dict[str, str]]:
    return [{"path": p, "reason": r} for p, r in report.skipped]


def update(library: Any, args: argparse.Namespace) -> int:
    """``update`` / ``index`` (and ``enable``, which records the settings first)."""
    enabling = args.command == "enable"
    if enabling:
        from ..service import record_settings

        library.check_model(reembed=args.reembed)
        record_settings(library, interval=args.interval, watch=args.watch)
    ray = getattr(args, "ray", None)
    # Ray prints its workers' errors (e.g. a task it retries) on stdout: keep --json output parseable.
    with contextlib.redirect_stdout(sys.stderr) if ray and args.json else contextlib.nullcontext():
        try:
            report = library.update(progress=not (args.quiet or args.json), reembed=args.reembed, ray=ray,
                                    ray_send_files=getattr(args, "ray_send_files", False))
        finally:
            if ray:
                from ..core.ray_embed import disconnect

                disconnect()  # now, while its last messages still go to stderr
    if args.json:
        settings = {k: library.status()[k] for k in ("enabled", "interval", "watch")} if enabling else {}
        print_json({**report.__dict__, "skipped": _skipped(report), "model": library.spec.text,
                    "index": library.index_name, **settings})
        return 0
    say(f"{library.root}: {report.summary()} (model {library.spec.label()}, index {library.index_name})")
    if enabling:
        status = library.status()
        events = " and on file changes" if status["watch"] else ""
        say(f"automatic updates on: every {status['interval']:g} s{events}"
            " while picsift watch FOLDER or picsift.enable(FOLDER) runs")
    for path, reason in report.skipped[:20]:
        say(f"  skipped {path}: {reason}")
    if len(report.skipped) > 20:
        say(f"  ... and {len(report.skipped) - 20} more (picsift status --skipped)")
    for about, reason in report.objects_skipped[:20]:
        say(f"  skipped {about}: {reason}")
    if len(report.objects_skipped) > 20:
        say(f"  ... and {len(report.objects_skipped) - 20} more objects")
    return 0


def disable(library: Any, args: argparse.Namespace) -> int:
    from ..service import disable as turn_off

    turn_off(library)
    if args.json:
        print_json({"root": str(library.root), "enabled": False})
    else:
        say(f"{library.root}: automatic updates off (embeddings kept; picsift enable FOLDER to resume)")
    return 0


def watch(library: Any, args: argparse.Namespace) -> int:
    """Run a :class:`~picsift.service.Service` in the foreground until Ctrl-C (or SIGTERM): exit 0."""
    import signal
    import threading

    from ..service import enable

    def line(service: Any) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        report, failed = service.last_report, service.status()["failing"]
        if args.json:
            record = {"time": stamp, "ok": not failed, "error": service.last_error if failed else None}
            if report is not None and not failed:
                record.update(report.__dict__, skipped=_skipped(report))
            print(json.dumps(record, default=str), flush=True)
        elif failed:
            say(f"{stamp}  {library.root}: update failed: {service.last_error}", flush=True)
        else:
            say(f"{stamp}  {library.root}: {report.summary()}", flush=True)

    service = enable(library, interval=args.interval, watch=not args.no_events, reembed=args.reembed, on_run=line)
    if not args.no_events:  # say "watching" once file events are really received (about a second)
        deadline = time.monotonic() + 30
        while not service.status()["watching"] and service.running and time.monotonic() < deadline:
            time.sleep(0.05)
    what = f"every {service.interval:g} s" + ("" if args.no_events else " and on file changes")
    say(f"picsift: watching {library.root} ({what}); Ctrl-C to stop", file=sys.stderr, flush=True)
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
    say(f"picsift: stopped watching {library.root}", file=sys.stderr, flush=True)
    return 0


def search(library: Any, args: argparse.Namespace) -> int:
    """``search PROMPT...`` and ``similar IMAGE...``: the same options, the same output."""
    options = dict(limit=args.limit, min_score=args.min_score, max_score=args.max_score,
                   negative_text=args.negative or None, combine=args.combine, within=args.within,
                   objects=args.objects, regions=args.regions)
    if args.command == "search":
        results = library.search(args.prompt, **options)
    else:
        results = library.similar(args.images, exclude_references=args.exclude_references, **options)
    if args.json:
        print_json({"query": results.query, "model": library.spec.text,
                    "results": results.df.to_dict(orient="records"), "distribution": results.distribution(args.bins)})
        return 0
    what = "objects" if args.objects else "images"
    say(f"{len(results)} of {len(results.scores)} {what}  (model {library.spec.label()})")
    for row in results.df.to_dict(orient="records"):
        where = f"  {row['class']}  box {row['box']}" if args.objects else f"  box {row['box']}" if args.regions else ""
        say(f"{row['rank']:>4}  {row['score']:6.3f}  {row['path']}{where}")
    return 0


def sample(library: Any, args: argparse.Namespace) -> int:
    table = library.sample(args.n, method=args.method, clusters=args.clusters, seed=args.seed, within=args.within,
                           exclude=args.exclude, exclude_labelled=args.exclude_labelled).df[["rank", "id", "path"]]
    if args.json:
        print_json({"recipe": library.collections.recipe(), "results": table.to_dict(orient="records")})
        return 0
    say(f"{len(table)} images, {args.method} sample  (model {library.spec.label()})")
    for row in table.itertuples():
        say(f"{row.rank:>4}  {row.path}")
    return 0


def outliers(library: Any, args: argparse.Namespace) -> int:
    table = library.outliers(args.n, args.k, within=args.within, save_as=args.save,
                             progress=not args.json).df[["rank", "id", "path", "score"]]
    if args.json:
        print_json({"recipe": library.collections.recipe(), "results": table.to_dict(orient="records")})
        return 0
    say(f"{len(table)} most isolated images (score: 1 - mean similarity to {args.k} nearest neighbours)")
    for row in table.itertuples():
        say(f"{row.rank:>4}  {row.score:6.3f}  {row.path}")
    return 0


def duplicates(library: Any, args: argparse.Namespace) -> int:
    threshold = library.spec.duplicate_threshold() if args.threshold is None else args.threshold
    table = library.near_duplicates(threshold, within=args.within, save_as=args.save,
                                    progress=not args.json).df[["group", "id", "path", "similarity"]]
    if args.json:
        print_json({"recipe": library.collections.recipe(), "results": table.to_dict(orient="records")})
        return 0
    say(f"{table['group'].nunique()} groups of near-identical images (similarity >= {threshold})")
    for row in table.itertuples():
        say(f"{row.group:>4}  {row.similarity:6.3f}  {row.path}")
    return 0


#: The fields ``status`` prints for people, in this order.
STATUS_FIELDS = ("root", "workspace", "model_label", "index", "files", "images", "embedded", "pending", "skipped",
                 "ready", "updating", "interrupted", "enabled", "interval", "watch", "last_update", "collections")


def status(library: Any, args: argparse.Namespace) -> int:
    state = library.status()
    if args.skipped:
        state["skipped_files"] = [{"path": p, "reason": r} for p, r in library.skipped()]
    if args.json:
        print_json(state)
        return 0
    for key in STATUS_FIELDS:
        value = state[key]
        if key == "last_update" and value is not None:
            value = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
        say(f"{key:>12}: {value}")
    if state.get("progress"):
        say(f"{'progress':>12}: {state['progress']['done']} / {state['progress']['total']} files")
    for item in state.get("skipped_files", []):
        say(f"  skipped {item['path']}: {item['reason']}")
    return 0


def collections(library: Any, args: argparse.Namespace) -> int:
    if args.save:
        library.collections.save(args.save)
    if args.delete:
        library.collections.delete(args.delete)
    if args.rerun:
        library.collections.rerun(args.rerun)
    table = library.collections.table()
    if args.json:
        print_json(json.loads(table.to_json(orient="records", date_format="iso")))
        return 0
    shown = table.apply(lambda column: column.map(printable) if column.dtype == object else column)
    for line in (shown.to_string(index=False) if len(table) else "no saved collections").splitlines():
        say(line)
    return 0


def export(library: Any, args: argparse.Namespace) -> int:
    out = library.export(args.collection, args.out, args.format)
    rows = len(library.collection(args.collection))
    if args.json:
        print_json({"collection": args.collection, "format": args.format, "out": str(out), "images": rows})
    else:
        say(f"wrote {rows} images of {args.collection!r} as {args.format} to {out}")
    return 0


def import_project(library: Any, args: argparse.Namespace) -> int:
    datasets = library.labels.import_project(args.project, args.format, target=args.target)
    report = library.update(progress=not args.json)
    table = library.labels.datasets()
    sizes = dict(zip(table["name"], table["size"], strict=True))
    if args.json:
        print_json({"datasets": [{"name": d, "images": int(sizes[d])} for d in datasets], "update": report.summary()})
        return 0
    for name in datasets:
        say(f"imported {name}: {sizes[name]} images")
    say(f"{library.root}: {report.summary()}")
    return 0


def demo(args: argparse.Namespace) -> int:
    """``demo`` opens no library of the user's: it fetches its own images."""
    from ..demo import run_demo

    run_demo(model=args.model, folder=args.folder, notebook=args.notebook, out=args.out)
    return 0


def mistakes(library: Any, args: argparse.Namespace) -> int:
    """``mistakes``: labels ranked most likely wrong first."""
    found = library.label_mistakes(args.field, limit=args.limit)
    objects = [c for c in ("image_id", "class", "box", "label_id") if c in found.columns]  # field "objects"
    table = found.df[["rank", "id", "path", *objects, "score", "given", "suggested", "issue", "reason"]]
    if args.json:
        print_json({"recipe": library.collections.recipe(), "results": table.to_dict(orient="records")})
        return 0
    info = found.recipe.info
    what = "objects" if objects else "images"
    say(f"{info['issues']} likely label mistakes among {info['labelled']} {what} labelled by {args.field!r} "
        f"({info['unlabelled']} unlabelled); the {len(table)} most likely first:")
    for row in table.itertuples():
        box = f" box {row.box}" if objects else ""
        say(f"{row.rank:>4}  {row.score:5.3f}  {row.given} -> {row.suggested}  {row.path}{box}  ({row.reason})")
    return 0


def health(library: Any, args: argparse.Namespace) -> int:
    """``health``: the dataset health report."""
    report = library.health(field=args.field, split=args.split)
    if args.json:
        print_json(report.to_dict())
        return 0
    for line in str(report).splitlines():
        say(line)
    for name, finding in report.findings.items():
        for row in finding.images.df.head(args.show).itertuples():
            say(f"    {name}: {row.path}" + (f" box {row.box} {row.reason}" if "box" in finding.images.columns else ""))
    return 0
