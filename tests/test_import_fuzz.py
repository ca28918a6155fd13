"""Hostile projects: random and crafted annotation files for the importers (COCO, YOLO, Supervisely, Pascal VOC,
CVAT, Label Studio).

Whatever a project holds (wrong types, huge or non-finite numbers, deep nesting, odd paths, links out of the
project, a named pipe), an import either succeeds or raises picsift's own :class:`PicsiftError`; and it reads
and writes nothing outside the project and the library: a folder of sentinel files beside them is
byte-for-byte and mtime-for-mtime the same afterwards, the project is untouched, the library holds no copy
of the private image, and every path the catalog recorded stays inside the library.

Hypothesis runs a fixed number of examples per format, derandomized, so CI sees the same cases each time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from picsift import Library, PicsiftError
from picsift.safe_paths import library_path

from .conftest import stamp_files

FUZZ = settings(max_examples=50, derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- hostile values ---------------------------------------------------------------------------------------------
HUGE = st.sampled_from([2**63, -(2**63) - 1, 10**30, 2**31, -1, 0, 1e308, -1e308, 5e-324])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), HUGE, st.floats(), st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
#: Texts that are not JSON, or JSON no parser should take on trust: deep nesting, a number of 5,000 digits.
RAW = st.sampled_from(["[" * 100_000, '{"images": ' + "[" * 50_000, "9" * 5000, "1e999999", b"\xff\xfe{\x00",
                       "{", "", "null", '"\\ud800"', "[" * 300 + "]" * 300])
#: Placeholders the project builder turns into real paths of this example.
SECRET, OUTSIDE, IN_PROJECT = "<secret>", "<outside-dir>", "<project>"
NAMES = st.sampled_from([
    "a.png", "sub/b.png", "link.png", "fifo.png", "missing.png", "./a.png", "sub/../a.png",
    "../outside/secret.png", "images/../../outside/secret.png", "../../../../../../etc/hostname", SECRET,
    "/etc/hostname", "", ".", "..", "a\x00.png", "\\..\\outside\\secret.png", "C:\\x.png", "\udcff.png",
])


class Chaos:
    """The draws of one example: each value is the valid one, or, at this example's rate, a hostile one.

    Rates run from 0 (a clean project, which must import) through a few hostile values to all of them.
    """

    def __init__(self, draw: st.DrawFn):
        self.draw = draw
        self.rate = draw(st.sampled_from([0, 3, 10, 30, 100]))  # percent

    def hit(self) -> bool:
        return self.rate > 0 and self.draw(st.integers(0, 99)) < self.rate

    def value(self, valid: Any, hostile: st.SearchStrategy[Any] = JSON) -> Any:
        return self.draw(hostile) if self.hit() else valid

    def document(self, structured: Any) -> str | bytes:
        """A file's text: the structured document, else any JSON value or text that is not JSON."""
        return self.value(json.dumps(structured), JSON.map(json.dumps) | RAW)

    def tags(self) -> Any:
        hostile = st.lists(st.fixed_dictionaries({"name": JSON, "value": JSON}), max_size=2) | JSON
        return self.value([{"name": "colour", "value": self.value("red")}], hostile)

    def points(self) -> Any:
        number = st.one_of(st.floats(), HUGE, JSON)
        return self.value([[1, 2], [20, self.value(25, number)], [4, 30]],
                          st.lists(st.lists(number, max_size=3), max_size=4) | JSON)


@st.composite
def coco_files(draw: st.DrawFn) -> dict[str, Any]:
    c = Chaos(draw)
    images = [{"id": c.value(n), "file_name": c.value(["a.png", "sub/b.png"][n % 2], NAMES | JSON),
               "width": c.value(64, HUGE | JSON), "height": c.value(48), "tags": c.tags()}
              for n in range(draw(st.integers(1, 3)))]
    annotations = [{"id": n, "image_id": c.value(n % len(images)), "category_id": c.value(7),
                    "bbox": c.value([1, 2, 10, c.value(12, HUGE | st.floats())], st.lists(st.floats() | HUGE) | JSON),
                    "segmentation": c.value([], st.lists(st.floats() | HUGE, max_size=10).map(lambda f: [f]) | JSON),
                    "attributes": c.value({"occluded": c.value(True)})} for n in range(draw(st.integers(0, 3)))]
    categories = c.value([{"id": c.value(7), "name": c.value("fruit")}])
    return {"annotations": c.document({"images": c.value(images), "annotations": c.value(annotations),
                                       "categories": categories}),
            "links": c.hit(), "link_folder": c.hit()}


YOLO_NAMES = st.sampled_from([
    "names:\n  0: car\n  1: tyre\n", "names:\n- car\n", "names: {0: car, 'x': tyre}\n",
    "names:\n  zero: car\n", "names: [" * 250 + "\n", "names: [" + "9" * 5000 + "]\n", "names: ['', '  ']\n",
    "names: [lambda: 1, __import__('os')]\n", "nc: 2\n", "names: {0: [1, [2, {3: 4}]]}\n",
]) | st.text(max_size=40).map(lambda t: f"names: {t}\n")
HOSTILE_LINE = st.one_of(
    st.lists(st.sampled_from(["0", "1", "-1", "99999999999999999999", "nan", "inf", "-inf", "1e999", "0.5",
                              "x", "1e-999", "0x10"]), max_size=9).map(" ".join),
    st.text(max_size=30),
)


@st.composite
def yolo_files(draw: st.DrawFn) -> dict[str, Any]:
    c = Chaos(draw)
    valid_lines = ["0 0.5 0.5 0.25 0.25", "1 0.1 0.1 0.3 0.1 0.2 0.4"]
    return {"names": c.value("names: [car, tyre]\n", YOLO_NAMES),
            "labels": [c.value(valid_lines[n % 2], HOSTILE_LINE) for n in range(draw(st.integers(0, 4)))],
            "links": c.hit(), "link_labels": c.hit(), "link_folder": c.hit(), "link_names": c.hit()}


@st.composite
def supervisely_files(draw: st.DrawFn) -> dict[str, Any]:
    c = Chaos(draw)
    meta = {"classes": c.value([{"title": c.value("animal"), "shape": c.value("rectangle")}]),
            "tags": c.value([{"name": c.value("colour"), "value_type": c.value("any_string")}])}
    objects = [{"classTitle": c.value("animal"),
                "geometryType": c.value(["rectangle", "polygon"][n % 2], st.sampled_from(["bitmap", "point"]) | JSON),
                "points": c.value({"exterior": c.points(), "interior": c.value([])}),
                "tags": c.tags(), "labelerLogin": c.value("ann")} for n in range(draw(st.integers(0, 3)))]
    ann = {"size": c.value({"width": c.value(64, HUGE | JSON), "height": c.value(48)}), "tags": c.tags(),
           "objects": c.value(objects)}
    return {"meta": c.document(meta), "ann": c.document(ann), "links": c.hit(), "link_ann": c.hit(),
            "link_folder": c.hit()}


# -- one example: a project beside a folder of sentinels, imported into a fresh library ---------------------------
def fill(value: Any, base: Path) -> Any:
    """Replace the placeholders in a drawn value with this example's real paths."""
    if isinstance(value, str):
        return (value.replace(SECRET, str(base / "outside" / "secret.png"))
                .replace(OUTSIDE, str(base / "outside")).replace(IN_PROJECT, str(base / "project")))
    if isinstance(value, list):
        return [fill(v, base) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, base) for k, v in value.items()}
    return value


def write(path: Path, text: str | bytes, base: Path) -> None:
    """Write a drawn file; lone surrogates become bytes that are not UTF-8, as in a broken file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else fill(text, base).encode("utf-8", "surrogatepass"))


def add_images(folder: Path, images: list[Path], base: Path, links: bool) -> None:
    """Two real images (one in a subfolder); with ``links``, an image linked out of the project and a pipe."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    shutil.copy2(images[0], folder / "a.png")
    shutil.copy2(images[1], folder / "sub" / "b.png")
    if links:
        (folder / "link.png").symlink_to(base / "outside" / "secret.png")
        os.mkfifo(folder / "fifo.png")


def link_out(path: Path, target: Path) -> None:
    """Make ``path`` a link to ``target`` (outside the project), replacing what was there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target, target_is_directory=target.is_dir())


def build_coco(project: Path, drawn: dict[str, Any], images: list[Path], base: Path) -> None:
    write(project / "annotations" / "instances_val.json", drawn["annotations"], base)
    add_images(project / "images" / "val", images, base, drawn["links"])
    if drawn["link_folder"]:
        link_out(project / "images" / "val", base / "outside")


def build_yolo(project: Path, drawn: dict[str, Any], images: list[Path], base: Path) -> None:
    write(project / "data.yaml", drawn["names"], base)
    add_images(project / "images" / "train", images, base, drawn["links"])
    write(project / "labels" / "train" / "a.txt", "\n".join(drawn["labels"]), base)
    if drawn["link_labels"]:
        link_out(project / "labels" / "train" / "a.txt", base / "outside" / "labels.txt")
    if drawn["link_names"]:
        link_out(project / "data.yaml", base / "outside" / "data.yaml")
    if drawn["link_folder"]:
        link_out(project / "images" / "train", base / "outside")


def build_supervisely(project: Path, drawn: dict[str, Any], images: list[Path], base: Path) -> None:
    write(project / "meta.json", drawn["meta"], base)
    add_images(project / "zoo" / "img", images, base, drawn["links"])
    write(project / "zoo" / "ann" / "a.png.json", drawn["ann"], base)
    if drawn["link_ann"]:
        link_out(project / "zoo" / "ann" / "a.png.json", base / "outside" / "ann.json")
    if drawn["link_folder"]:
        link_out(project / "zoo" / "img", base / "outside")


def snapshot(base: Path, skip: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under ``base`` except ``skip``: kind, mtime and content hash (links by their target)."""
    found = {}
    for folder, dirs, files in os.walk(base):
        if Path(folder) == skip:
            dirs.clear()
            continue
        for name in dirs + files:
            path = Path(folder) / name
            if path == skip:
                continue
            st_ = path.lstat()
            if path.is_symlink():
                found[str(path)] = ("link", st_.st_mtime_ns, os.readlink(path))
            elif path.is_file():
                found[str(path)] = ("file", st_.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                found[str(path)] = ("other", st_.st_mtime_ns, "")
    return found


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, stamps_root: Path) -> Iterator[Callable[[], Any]]:
    """A maker of fresh example folders: ``outside/`` (a private image, label and annotation files), ``lib/``."""
    images = stamp_files(stamps_root, ("animals", "food"), 2)
    root = tmp_path_factory.mktemp("fuzz")

    @contextmanager
    def example() -> Iterator[tuple[Path, list[Path]]]:
        base = Path(tempfile.mkdtemp(dir=root))  # left for pytest to clean up: removing each costs more than it
        (base / "outside").mkdir()
        shutil.copy2(images[3], base / "outside" / "secret.png")
        (base / "outside" / "labels.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        (base / "outside" / "data.yaml").write_text("names: [secret]\n")
        (base / "outside" / "ann.json").write_text(json.dumps({"size": {"width": 5, "height": 5}}))
        (base / "lib").mkdir()
        yield base, images[:2]

    yield example


def import_and_check(sandbox: Callable[[], Any], fmt: str, drawn: dict[str, Any],
                     build: Callable[[Path, dict[str, Any], list[Path], Path], None]) -> None:
    with sandbox() as (base, images):
        build(base / "project", drawn, images, base)
        before = snapshot(base, skip=base / "lib")
        secret = (base / "outside" / "secret.png").read_bytes()
        with Library(base / "lib") as library:
            with suppress(PicsiftError):  # a clear refusal is fine; anything else fails the test
                library.labels.import_project(base / "project", fmt)
            recorded = library.catalog.db.execute(
                "SELECT path FROM dataset_items UNION ALL SELECT folder FROM datasets").fetchall()
        assert snapshot(base, skip=base / "lib") == before  # nothing outside the library read-modified or written
        root = (base / "lib").resolve()
        for (path,) in recorded:
            assert library_path(root, path).resolve().is_relative_to(root), path
        copied = [p for p in root.rglob("*") if p.is_file() and ".picsift" not in p.relative_to(root).parts]
        assert all(p.resolve().is_relative_to(root) for p in copied)
        assert secret not in {p.read_bytes() for p in copied}  # the private image never travelled in


@FUZZ
@given(drawn=coco_files())
def test_hostile_coco_projects(sandbox: Callable[[], Any], drawn: dict[str, Any]) -> None:
    import_and_check(sandbox, "coco", drawn, build_coco)


@FUZZ
@given(drawn=yolo_files())
def test_hostile_yolo_projects(sandbox: Callable[[], Any], drawn: dict[str, Any]) -> None:
    import_and_check(sandbox, "yolo", drawn, build_yolo)


@FUZZ
@given(drawn=supervisely_files())
def test_hostile_supervisely_projects(sandbox: Callable[[], Any], drawn: dict[str, Any]) -> None:
    import_and_check(sandbox, "supervisely", drawn, build_supervisely)


# -- Pascal VOC, CVAT and Label Studio: the same promises, and XML that carries entities is refused ------------------
#: XML no parser should take on trust: entity expansion (billion laughs), external entities and DTDs, broken text.
RAW_XML = st.sampled_from([
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;&x;&x;&x;&x;">]><a>&y;</a>',
    f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY s SYSTEM "file://{SECRET}">]><annotation>&s;</annotation>',
    '<?xml version="1.0"?><!DOCTYPE a SYSTEM "http://127.0.0.1:9/x.dtd"><annotations/>',
    "<annotation>" * 100_000, "<a><b></a>", "", "\x00", b"\xff\xfe<\x00a\x00>", "<annotations/>", "<annotation/>",
])


def xml_text(value: Any) -> str:
    return escape(str(value))


@st.composite
def voc_files(draw: st.DrawFn) -> dict[str, Any]:
    c = Chaos(draw)
    objects = "".join(
        f"<object><name>{xml_text(c.value('cat'))}</name><difficult>{xml_text(c.value(0))}</difficult>"
        + (f"<polygon><x1>1</x1><y1>2</y1><x2>{xml_text(c.value(20, HUGE | JSON))}</x2><y2>25</y2>"
           f"<x3>4</x3><y3>30</y3></polygon>" if n % 2 else
           "<bndbox>" + "".join(f"<{k}>{xml_text(c.value(v, HUGE | JSON))}</{k}>"
                                for k, v in (("xmin", 1), ("ymin", 2), ("xmax", 20), ("ymax", 25))) + "</bndbox>")
        + f"<attributes><attribute><name>{xml_text(c.value('colour'))}</name><value>{xml_text(c.value('red'))}"
          "</value></attribute></attributes></object>"
        for n in range(draw(st.integers(0, 3))))
    document = (f"<annotation><filename>{xml_text(c.value('a.png', NAMES | JSON))}</filename><size><width>"
                f"{xml_text(c.value(64, HUGE | JSON))}</width><height>48</height></size>{objects}</annotation>")
    return {"xml": c.value(document, RAW_XML), "split": c.value("a\n", NAMES.map(lambda n: f"{n}\n") | JSON),
            "links": c.hit(), "link_xml": c.hit(), "link_folder": c.hit()}


@st.composite
def cvat_files(draw: st.DrawFn) -> dict[str, Any]:
    c = Chaos(draw)
    shapes = "".join(
        (f'<box label="{xml_text(c.value("cat"))}" xtl="{xml_text(c.value(1, HUGE | JSON))}" ytl="2" '
         f'xbr="{xml_text(c.value(20, HUGE | JSON))}" ybr="25" occluded="{xml_text(c.value(1))}">'
         if n % 2 == 0 else
         f'<polygon label="cat" points="{xml_text(c.value("1,2;20,25;4,30", st.text(max_size=20) | JSON))}">')
        + f'<attribute name="{xml_text(c.value("colour"))}">{xml_text(c.value("red"))}</attribute>'
        + ("</box>" if n % 2 == 0 else "</polygon>")
        for n in range(draw(st.integers(0, 3))))
    document = (f'<annotations><version>1.1</version><image id="0" name="{xml_text(c.value("a.png", NAMES | JSON))}" '
                f'subset="{xml_text(c.value("train", NAMES | JSON))}" width="{xml_text(c.value(64, HUGE | JSON))}" '
                f'height="48"><tag label="{xml_text(c.value("outdoor"))}"/>{shapes}</image></annotations>')
    return {"xml": c.value(document, RAW_XML), "links": c.hit(), "link_xml": c.hit(), "link_folder": c.hit()}


@st.composite
def labelstudio_files(draw: st.DrawFn) -> dict[str, Any]:
    c = Chaos(draw)
    odd_types = st.sampled_from(["brushlabels", "textarea", "number"]) | JSON
    kinds = ["rectanglelabels", "polygonlabels", "choices"]
    results = [{"id": c.value(f"r{n}"), "type": c.value(kinds[n % 3], odd_types),
                "from_name": c.value("label"), "original_width": c.value(64, HUGE | JSON), "original_height": 48,
                "value": c.value({"x": c.value(10, HUGE | JSON), "y": 5, "width": 50, "height": c.value(25),
                                  "rotation": c.value(0, HUGE | JSON), "points": c.points(), "choices": c.value(["a"]),
                                  "rectanglelabels": c.value(["cat"]), "polygonlabels": c.value(["cat"])})}
               for n in range(draw(st.integers(0, 3)))]
    image = c.value("/data/local-files/?d=images/a.png", NAMES | JSON | st.sampled_from(
        ["https://127.0.0.1:9/a.png", "s3://b/a.png", "data:image/png;base64,AAAA", f"/data/local-files/?d={SECRET}",
         "/data/upload/1/../../../outside/secret.png", "/data/local-files/?d=..%2Foutside%2Fsecret.png"]))
    tasks = c.value([{"id": c.value(1), "data": c.value({"image": image, "dataset": c.value("train", NAMES | JSON)}),
                      "annotations": c.value([{"result": c.value(results), "completed_by": c.value({"email": "a"})}])}])
    return {"tasks": c.document(tasks), "links": c.hit(), "link_tasks": c.hit(), "link_folder": c.hit()}


def build_voc(project: Path, drawn: dict[str, Any], images: list[Path], base: Path) -> None:
    write(project / "Annotations" / "a.xml", drawn["xml"], base)
    write(project / "ImageSets" / "Main" / "train.txt", drawn["split"] if isinstance(drawn["split"], str)
          else json.dumps(drawn["split"]), base)
    add_images(project / "JPEGImages", images, base, drawn["links"])
    if drawn["link_xml"]:
        link_out(project / "Annotations" / "a.xml", base / "outside" / "ann.json")
    if drawn["link_folder"]:
        link_out(project / "JPEGImages", base / "outside")


def build_cvat(project: Path, drawn: dict[str, Any], images: list[Path], base: Path) -> None:
    write(project / "annotations.xml", drawn["xml"], base)
    add_images(project / "images" / "train", images, base, drawn["links"])
    if drawn["link_xml"]:
        link_out(project / "annotations.xml", base / "outside" / "ann.json")
    if drawn["link_folder"]:
        link_out(project / "images" / "train", base / "outside")


def build_labelstudio(project: Path, drawn: dict[str, Any], images: list[Path], base: Path) -> None:
    write(project / "tasks.json", drawn["tasks"], base)
    add_images(project / "images", images, base, drawn["links"])
    if drawn["link_tasks"]:
        link_out(project / "tasks.json", base / "outside" / "ann.json")
    if drawn["link_folder"]:
        link_out(project / "images", base / "outside")


@FUZZ
@given(drawn=voc_files())
def test_hostile_voc_projects(sandbox: Callable[[], Any], drawn: dict[str, Any]) -> None:
    import_and_check(sandbox, "voc", drawn, build_voc)


@FUZZ
@given(drawn=cvat_files())
def test_hostile_cvat_projects(sandbox: Callable[[], Any], drawn: dict[str, Any]) -> None:
    import_and_check(sandbox, "cvat", drawn, build_cvat)


@FUZZ
@given(drawn=labelstudio_files())
def test_hostile_labelstudio_projects(sandbox: Callable[[], Any], drawn: dict[str, Any]) -> None:
    import_and_check(sandbox, "labelstudio", drawn, build_labelstudio)
