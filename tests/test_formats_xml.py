"""Pascal VOC, CVAT for images 1.1 and Label Studio: round trips from COCO and Supervisely, what the formats' own
tools make of what picsift writes, and XML that must not be trusted (entities, external references)."""

from __future__ import annotations

import json
import logging
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from picsift import Library, PicsiftError
from picsift.cli import main

from .conftest import stamp_files
from .test_formats import annotations, library_contents, make_coco, make_supervisely, private_image

NEW_FORMATS = ["voc", "cvat", "labelstudio"]
#: How far a coordinate may move in a round trip: VOC holds whole pixels, CVAT hundredths, Label Studio percentages.
TOLERANCE = {"voc": 0.5, "cvat": 0.005, "labelstudio": 1e-6}


@pytest.fixture
def library(tmp_path: Path) -> Library:
    (tmp_path / "lib").mkdir()
    return Library(tmp_path / "lib")


def objects_by_image(lib: Library) -> dict[str, list[tuple[str, str, list[list[float]]]]]:
    meta = lib.labels
    return {Path(item.path).name: sorted((o["class"], o["geometry"], o["points"])
                                         for o in meta.objects(item.id).to_dict("records"))
            for d in meta.dataset_names() for item in meta.dataset_items(d).itertuples()}


def assert_same_objects(after: dict[str, Any], before: dict[str, Any], tolerance: float) -> None:
    assert sorted(after) == sorted(before)
    for name, objects in before.items():
        assert [(c, g, len(p)) for c, g, p in after[name]] == [(c, g, len(p)) for c, g, p in objects], name
        for (_, _, points_after), (_, _, points_before) in zip(after[name], objects, strict=True):
            for a, b in zip(points_after, points_before, strict=True):
                assert a == pytest.approx(b, abs=tolerance), (name, points_before, points_after)


def export_and_reimport(library: Library, tmp_path: Path, fmt: str) -> tuple[Path, Library]:
    ids = [i for d in library.labels.dataset_names() for i in library.labels.dataset_items(d)["id"]]
    library.collections.write("picked", ids)
    out = library.export("picked", tmp_path / "out" / fmt, fmt)
    (tmp_path / f"again-{fmt}").mkdir()
    again = Library(tmp_path / f"again-{fmt}")
    again.labels.import_project(out, fmt)
    return out, again


@pytest.mark.parametrize("fmt", NEW_FORMATS)
def test_coco_round_trip_keeps_every_object(library: Library, tmp_path: Path, stamps_root: Path, fmt: str) -> None:
    library.labels.import_project(make_coco(tmp_path / "src", stamps_root), "coco")
    before = objects_by_image(library)
    assert sum(len(v) for v in before.values()) == 4
    out, again = export_and_reimport(library, tmp_path, fmt)
    after = objects_by_image(again)
    assert_same_objects(after, before, TOLERANCE[fmt])
    assert after == before  # whole-pixel boxes come back exactly, in every format
    assert sorted(n.split("/")[1] for n in again.labels.dataset_names()) == ["train", "val"]
    for name in before:  # the image files travel byte for byte
        assert next(out.rglob(name)).read_bytes() == next((library.root).rglob(name)).read_bytes()


@pytest.mark.parametrize("fmt", NEW_FORMATS)
def test_tags_polygons_and_numbers_survive(library: Library, tmp_path: Path, stamps_root: Path, fmt: str) -> None:
    library.labels.import_project(make_supervisely(tmp_path / "src", stamps_root), "supervisely")
    _, again = export_and_reimport(library, tmp_path, fmt)
    assert_same_objects(objects_by_image(again), objects_by_image(library), TOLERANCE[fmt])
    keeps_authors = fmt == "labelstudio"
    before = annotations(library, authors=keeps_authors)
    after = annotations(again, authors=keeps_authors)
    if fmt == "voc":  # whole pixels: compare everything but the coordinates
        before = {k: (t, [(c, g, [], tags, a) for c, g, _, tags, a in o]) for k, (t, o) in before.items()}
        after = {k: (t, [(c, g, [], tags, a) for c, g, _, tags, a in o]) for k, (t, o) in after.items()}
    assert after == before
    legs = [t for ts in again.labels.objects()["tags"] for t in ts if t[0] == "legs"]
    assert sorted(legs) == [("legs", 2)] * 2 + [("legs", 4)] * 4  # numbers stay numbers


def test_cli_imports_and_exports_the_new_formats(library: Library, tmp_path: Path, stamps_root: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from picsift.cli import build_parser

    parser = build_parser()
    for fmt in (*NEW_FORMATS, "hf"):
        assert parser.parse_args(["import", "lib", "proj", "--format", fmt]).format == fmt
        assert parser.parse_args(["export", "lib", "--format", fmt, "--out", "x"]).format == fmt
    with pytest.raises(SystemExit):
        parser.parse_args(["import", "lib", "proj", "--format", "pascal"])
    assert "invalid choice: 'pascal'" in capsys.readouterr().err


# -- the formats' own tools read what picsift writes ------------------------------------------------------------
def test_label_studio_converter_reads_the_export(library: Library, tmp_path: Path, stamps_root: Path) -> None:
    converter_module = pytest.importorskip("label_studio_sdk.converter")
    library.labels.import_project(make_coco(tmp_path / "src", stamps_root), "coco")
    out, _ = export_and_reimport(library, tmp_path, "labelstudio")
    converter = converter_module.Converter(config=(out / "label_config.xml").read_text(), project_dir=str(out),
                                           download_resources=False)
    converter.convert_to_coco(str(out / "tasks.json"), str(tmp_path / "ls-coco"), is_dir=False)
    coco = json.loads((tmp_path / "ls-coco" / "result.json").read_text())
    boxes = sorted(({c["id"]: c["name"] for c in coco["categories"]}[a["category_id"]],
                    [round(v, 3) for v in a["bbox"]]) for a in coco["annotations"])
    source = json.loads((tmp_path / "src" / "kitchen" / "annotations" / "instances_train.json").read_text())
    val = json.loads((tmp_path / "src" / "kitchen" / "annotations" / "instances_val.json").read_text())
    names = {7: "fruit", 9: "plate"}
    expected = sorted((names[a["category_id"]], [float(v) for v in a["bbox"]])
                      for a in source["annotations"] + val["annotations"])
    assert boxes == expected


def test_pycocotools_reads_a_coco_export(library: Library, tmp_path: Path, stamps_root: Path) -> None:
    coco_module = pytest.importorskip("pycocotools.coco")
    library.labels.import_project(make_supervisely(tmp_path / "src", stamps_root), "supervisely")
    out, _ = export_and_reimport(library, tmp_path, "coco")
    coco = coco_module.COCO(str(out / "annotations" / "instances_vehicles.json"))
    wheel = coco.getCatIds(catNms=["wheel"])
    anns = coco.loadAnns(coco.getAnnIds(catIds=wheel))
    assert len(anns) == 2
    mask = coco.annToMask(anns[0])
    assert mask.shape == (coco.imgs[anns[0]["image_id"]]["height"], coco.imgs[anns[0]["image_id"]]["width"])
    assert 80 <= mask.sum() <= 140  # the polygon (0,0) (10,0) (10.5,12) (0,8): about 111 pixels


def test_voc_export_has_the_published_structure(library: Library, tmp_path: Path, stamps_root: Path) -> None:
    """The fields of VOC2012's Annotations/2007_000027.xml, read the way torchvision's VOCDetection reads them."""
    library.labels.import_project(make_coco(tmp_path / "src", stamps_root), "coco")
    out, _ = export_and_reimport(library, tmp_path, "voc")
    for split in ("train", "val"):
        stems = (out / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        for stem in stems:
            root = ET.parse(out / "Annotations" / f"{stem}.xml").getroot()
            assert root.tag == "annotation"
            image = out / "JPEGImages" / root.findtext("filename")
            with Image.open(image) as opened:
                assert (int(root.findtext("size/width")), int(root.findtext("size/height"))) == opened.size
            for obj in root.findall("object"):
                assert obj.findtext("name") in ("fruit", "plate")
                assert obj.findtext("difficult") == "0" and obj.findtext("truncated") == "0"
                box = [int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
                assert box[0] < box[2] and box[1] < box[3]


def test_cvat_export_has_the_published_structure(library: Library, tmp_path: Path, stamps_root: Path) -> None:
    """CVAT for images 1.1 as CVAT's docs show it: version, meta/task/labels, image elements with box/polygon."""
    library.labels.import_project(make_supervisely(tmp_path / "src", stamps_root), "supervisely")
    out, _ = export_and_reimport(library, tmp_path, "cvat")
    root = ET.parse(out / "annotations.xml").getroot()
    assert root.findtext("version") == "1.1"
    labels = {label.findtext("name") for label in root.findall("meta/project/labels/label")}  # a project export
    assert {"animal", "wheel"} <= labels
    assert [t.findtext("subset") for t in root.findall("meta/project/tasks/task")] == ["animals", "vehicles"]
    images = root.findall("image")
    assert len(images) == 5 and {i.get("subset") for i in images} == {"animals", "vehicles"}
    for image in images:
        assert (out / "images" / image.get("subset") / image.get("name")).is_file()
        for box in image.findall("box"):
            xtl, ytl, xbr, ybr = (float(box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr"))
            assert xtl < xbr and ytl < ybr and box.get("occluded") in ("0", "1")
        for polygon in image.findall("polygon"):
            assert all(len(p.split(",")) == 2 for p in polygon.get("points").split(";"))
    assert root.find("image/box/attribute[@name='legs']") is not None


def test_datumaro_reads_the_voc_and_cvat_exports(library: Library, tmp_path: Path, stamps_root: Path) -> None:
    """Datumaro (the CVAT team's dataset library) imports what picsift wrote: every object, class and box.

    It pins older pandas, numpy and pyarrow, so it is not in the dev extra; this runs where it is installed
    (``pip install --target DIR --no-deps datumaro`` and its small dependencies, on ``PYTHONPATH``)."""
    dataset_module = pytest.importorskip("datumaro.components.dataset")
    from datumaro.components.annotation import AnnotationType

    library.labels.import_project(make_supervisely(tmp_path / "src", stamps_root), "supervisely")
    library.labels.import_project(make_coco(tmp_path / "src", stamps_root), "coco")
    ids = [i for d in library.labels.dataset_names() for i in library.labels.dataset_items(d)["id"]]
    objects = library.labels.objects().to_dict("records")
    ours = sorted((o["class"], [round(v) for v in _box(o["points"])]) for o in objects)
    for fmt in ("voc", "cvat"):
        out = library.export(ids, tmp_path / fmt, fmt)
        dataset = dataset_module.Dataset.import_from(str(out), fmt)
        labels = dataset.categories()[AnnotationType.label]
        theirs = []
        for item in dataset:
            for ann in item.annotations:
                if ann.type in (AnnotationType.bbox, AnnotationType.polygon):
                    x, y, w, h = ann.get_bbox()
                    theirs.append((labels[ann.label].name, [round(x), round(y), round(x + w), round(y + h)]))
        assert sorted(theirs) == ours, fmt
        assert sorted(dataset.subsets()) == ["animals", "train", "val", "vehicles"]


def _box(points: list[list[float]]) -> list[float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [min(xs), min(ys), max(xs), max(ys)]


# -- untrusted XML and paths --------------------------------------------------------------------------------------
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<{root}><filename>&lol4;</filename></{root}>
"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY secret SYSTEM "file://{secret}">]>
<{root}><filename>&secret;</filename><image name="&secret;" width="1" height="1"/></{root}>
"""


def xml_project(tmp_path: Path, stamps_root: Path, fmt: str, text: str) -> Path:
    project = tmp_path / "project"
    image = stamp_files(stamps_root, ("animals",), 1)[0]
    if fmt == "voc":
        (project / "Annotations").mkdir(parents=True)
        (project / "JPEGImages").mkdir()
        shutil.copy2(image, project / "JPEGImages" / "a.png")
        (project / "Annotations" / "a.xml").write_text(text.format(root="annotation", secret=tmp_path / "secret"))
    else:
        (project / "images").mkdir(parents=True)
        shutil.copy2(image, project / "images" / "a.png")
        (project / "annotations.xml").write_text(text.format(root="annotations", secret=tmp_path / "secret"))
    return project


@pytest.mark.parametrize("fmt", ["voc", "cvat"])
@pytest.mark.parametrize("attack", ["billion laughs", "external entity"])
def test_xml_entities_are_refused(library: Library, tmp_path: Path, stamps_root: Path, fmt: str, attack: str) -> None:
    (tmp_path / "secret").write_text("s3cr3t")
    project = xml_project(tmp_path, stamps_root, fmt, BILLION_LAUGHS if attack == "billion laughs" else XXE)
    with pytest.raises(PicsiftError, match=r"refused XML.*no entities") as caught:
        library.labels.import_project(project, fmt)
    assert ("a.xml" if fmt == "voc" else "annotations.xml") in str(caught.value)
    assert library_contents(library) == {} and library.labels.dataset_names() == []


@pytest.mark.parametrize("fmt", NEW_FORMATS)
def test_image_paths_out_of_the_project_are_refused(library: Library, tmp_path: Path, stamps_root: Path,
                                                    fmt: str) -> None:
    secret = private_image(tmp_path, stamps_root)
    library.labels.import_project(make_coco(tmp_path / "src", stamps_root), "coco")
    out, _ = export_and_reimport(library, tmp_path, fmt)
    (tmp_path / "victim").mkdir()
    victim = Library(tmp_path / "victim")
    for bad in (str(secret), "../../private/secret.png"):
        if fmt == "voc":
            xml = next((out / "Annotations").glob("*.xml"))
            xml.write_text(__import__("re").sub(r"<filename>.*</filename>", f"<filename>{bad}</filename>",
                                                xml.read_text()))
        elif fmt == "cvat":
            text = (out / "annotations.xml").read_text()
            first = ET.fromstring(text).find("image").get("name")
            (out / "annotations.xml").write_text(text.replace(f'name="{first}"', f'name="{bad}"', 1))
        else:
            tasks = json.loads((out / "tasks.json").read_text())
            tasks[0]["data"]["image"] = bad if bad.startswith("..") else f"/data/local-files/?d={bad}"
            (out / "tasks.json").write_text(json.dumps(tasks))
        with pytest.raises(PicsiftError, match=r"absolute|'\.\.'|outside|not found in the project") as caught:
            victim.labels.import_project(out, fmt)
        assert str(out) in str(caught.value)  # names the file
        assert library_contents(victim) == {} and victim.labels.dataset_names() == []


def test_label_studio_urls_and_odd_results(library: Library, tmp_path: Path, stamps_root: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    project = tmp_path / "ls"
    image = stamp_files(stamps_root, ("animals",), 1)[0]
    (project / "media").mkdir(parents=True)
    shutil.copy2(image, project / "media" / "cat.png")
    with Image.open(image) as opened:
        width, height = opened.size
    task = {"id": 7, "data": {"image": "/data/local-files/?d=home/me/media/cat.png"}, "annotations": [{"result": [
        {"id": "a", "type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": width,
         "original_height": height, "value": {"x": 0, "y": 0, "width": 50, "height": 50, "rotation": 90,
                                              "rectanglelabels": ["cat"]}},
        {"id": "b", "type": "keypointlabels", "value": {"x": 1, "y": 1, "keypointlabels": ["nose"]}},
        {"type": "choices", "from_name": "weather", "value": {"choices": ["rain", "wind"]}},
    ]}]}
    (project / "tasks.json").write_text(json.dumps([task]))
    with caplog.at_level(logging.WARNING):
        library.labels.import_project(project, "labelstudio")
    assert any("keypointlabels" in r.getMessage() for r in caplog.records)
    (obj,) = library.labels.objects().to_dict("records")
    assert obj["geometry"] == "polygon"  # turned 90 degrees about its top-left corner
    assert obj["points"][2] == pytest.approx([-height / 2, width / 2])
    assert sorted(library.labels.tags(library.labels.objects()["image_id"][0])) == [("weather", "rain"),
                                                                                   ("weather", "wind")]
    task["data"]["image"] = "https://example.com/cat.png"
    (project / "tasks.json").write_text(json.dumps([task]))
    with pytest.raises(PicsiftError, match=r"tasks\.json, task 7 .*is a URL"):
        Library(tmp_path / "lib").labels.import_project(project, "labelstudio")


@pytest.mark.parametrize("fmt", ["cvat", "hf"])
def test_cli_round_trip(image_folder: Path, tiny_model: str, tmp_path: Path, fmt: str,
                        capsys: pytest.CaptureFixture[str]) -> None:
    if fmt == "hf":
        pytest.importorskip("datasets")
    with Library(image_folder, model=tiny_model, index="exact") as lib:
        lib.update(progress=False)
        ids = lib.images()["id"].tolist()[:3]
        lib.labels.add_object(ids[0], "car", bbox=(1, 2, 11, 12))
        lib.labels.add_object(ids[1], "wheel", polygon=[(0, 0), (9, 0), (4, 7)])
        lib.labels.add_tag(ids[2], "weather", "rain")
        lib.collections.write("picked", ids)
    out = tmp_path / fmt
    assert main(["export", str(image_folder), "--model", tiny_model, "--collection", "picked", "--format", fmt,
                 "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 3
    other = tmp_path / "other"
    other.mkdir()
    assert main(["import", str(other), str(out), "--format", fmt, "--model", tiny_model, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sum(d["images"] for d in report["datasets"]) == 3
    with Library(other, model=tiny_model) as again:
        assert again.status()["embedded"] == 3
        objects = again.labels.objects().to_dict("records")
        assert sorted((o["image_id"], o["class"], o["points"]) for o in objects) == sorted(
            [(ids[0], "car", [[1, 2], [11, 12]]), (ids[1], "wheel", [[0, 0], [9, 0], [4, 7]])])
        assert again.labels.tags(ids[2]) == [("weather", "rain")]


# -- files shaped like the formats' published examples import as their authors meant ----------------------------
def write_images(folder: Path, sizes: dict[str, tuple[int, int]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n, (name, size) in enumerate(sizes.items()):
        Image.new("RGB", size, (40 * n, 90, 160)).save(folder / name)


def test_a_voc2012_style_project(library: Library, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """VOC2012's layout: Annotations/2007_000027.xml (an object with <part>s), ImageSets/Main with train, val,
    trainval and per-class lists (``person_train.txt``: ``stem  1``)."""
    project = tmp_path / "VOC2012"
    write_images(project / "JPEGImages", {"2007_000027.jpg": (486, 500), "2007_000032.jpg": (500, 281)})
    (project / "Annotations").mkdir()
    (project / "Annotations" / "2007_000027.xml").write_text("""<annotation>
	<folder>VOC2012</folder>
	<filename>2007_000027.jpg</filename>
	<source><database>The VOC2007 Database</database><annotation>PASCAL VOC2007</annotation><image>flickr</image>
	</source>
	<size><width>486</width><height>500</height><depth>3</depth></size>
	<segmented>0</segmented>
	<object>
		<name>person</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
		<bndbox><xmin>174</xmin><ymin>101</ymin><xmax>349</xmax><ymax>351</ymax></bndbox>
		<part><name>head</name><bndbox><xmin>169</xmin><ymin>104</ymin><xmax>209</xmax><ymax>146</ymax></bndbox></part>
	</object>
</annotation>""")
    (project / "Annotations" / "2007_000032.xml").write_text("""<annotation>
	<folder>VOC2012</folder><filename>2007_000032.jpg</filename>
	<size><width>500</width><height>281</height><depth>3</depth></size><segmented>1</segmented>
	<object><name>aeroplane</name><pose>Frontal</pose><truncated>0</truncated><difficult>0</difficult>
		<bndbox><xmin>104</xmin><ymin>78</ymin><xmax>375</xmax><ymax>183</ymax></bndbox></object>
	<object><name>person</name><pose>Rear</pose><truncated>1</truncated><difficult>1</difficult>
		<bndbox><xmin>195</xmin><ymin>180</ymin><xmax>213</xmax><ymax>229</ymax></bndbox></object>
</annotation>""")
    main_sets = project / "ImageSets" / "Main"
    main_sets.mkdir(parents=True)
    (main_sets / "train.txt").write_text("2007_000032\n")
    (main_sets / "val.txt").write_text("2007_000027\n")
    (main_sets / "trainval.txt").write_text("2007_000027\n2007_000032\n")
    (main_sets / "person_train.txt").write_text("2007_000032  1\n")
    assert library.labels.import_project(project, "voc") == ["VOC2012/train", "VOC2012/val"]
    found = {Path(k).name: v for k, v in objects_by_image(library).items()}
    assert found["2007_000027.jpg"] == [("person", "rectangle", [[174, 101], [349, 351]])]  # not its head part
    assert found["2007_000032.jpg"] == [("aeroplane", "rectangle", [[104, 78], [375, 183]]),
                                        ("person", "rectangle", [[195, 180], [213, 229]])]
    tags = sorted((o["class"], sorted(o["tags"])) for o in library.labels.objects().to_dict("records"))
    assert tags == [("aeroplane", [("pose", "Frontal")]), ("person", []),
                    ("person", [("difficult", None), ("pose", "Rear"), ("truncated", None)])]


def test_a_cvat_for_images_file_as_cvat_writes_it(library: Library, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The shapes of CVAT for images 1.1 (as in Datumaro's CVAT test assets): checkbox, radio, text and number
    attributes, a polyline, points, a skeleton and a polygon without a label; images named without a subset."""
    project = tmp_path / "cvat-task"
    write_images(project / "images", {"img0.jpg": (8, 8), "img1.jpg": (10, 10)})
    attributes = "".join(f"<attribute><name>{n}</name><input_type>{t}</input_type><default_value>{d}</default_value>"
                         f"<values>{v}</values></attribute>" for n, t, d, v in (
                             ("a1", "checkbox", "false", "false true"), ("a2", "radio", "v1", "v1 v2 v3"),
                             ("a3", "text", "0000", "0001 0002 0003"), ("a4", "number", "0", "2.4 1 -5.6")))
    (project / "annotations.xml").write_text(f"""<annotations><version>1.1</version>
  <meta><task><z_order>True</z_order><mode>annotation</mode><labels>
    <label><name>label1</name><attributes>{attributes}</attributes></label><label><name>label2</name></label>
    <label><name>skeleton</name><type>skeleton</type></label>
    <label><name>1</name><type>points</type><parent>skeleton</parent></label>
  </labels></task></meta>
  <image height="8" id="0" name="img0.jpg" width="8">
    <box label="label1" occluded="1" xbr="4" xtl="0" ybr="4" ytl="2" z_order="1">
      <attribute name="a1">true</attribute><attribute name="a2">v3</attribute>
      <attribute name="a3">0003</attribute><attribute name="a4">2.4</attribute>
    </box>
    <polyline label="" points="1.0,2;3,4;5,6;7,8"/>
    <skeleton label="skeleton" occluded="0" points="" rotation="0.00" z_order="0">
      <points label="1" occluded="0" outside="1" points="1,1" z_order="0"></points>
    </skeleton>
  </image>
  <image height="10" id="1" name="img1.jpg" width="10">
    <polygon label="" points="1,2;3,4;6,5" z_order="1"/>
    <points label="label2" points="1,2;3,4;5,6" z_order="2"/>
    <polygon label="label2" points="1,2;3,4;6,5" z_order="1"/>
  </image>
</annotations>""")
    with caplog.at_level(logging.WARNING):
        assert library.labels.import_project(project, "cvat") == ["cvat-task/default"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "<polyline>" in warned and "<skeleton>" in warned and "<points>" in warned
    assert "object class ''" in warned  # the polygon without a label, skipped with the reason
    (box,) = library.labels.objects(next(library.root.rglob("img0.jpg"))).to_dict("records")
    assert (box["class"], box["points"]) == ("label1", [[0, 2], [4, 4]])
    assert sorted(box["tags"]) == [("a1", "true"), ("a2", "v3"), ("a3", "0003"), ("a4", 2.4), ("occluded", None)]
    (polygon,) = library.labels.objects(next(library.root.rglob("img1.jpg"))).to_dict("records")
    assert (polygon["class"], polygon["geometry"], polygon["points"]) == ("label2", "polygon",
                                                                          [[1, 2], [3, 4], [6, 5]])
    assert [c for c, _, _ in library.labels.classes()] == ["label1", "label2"]
