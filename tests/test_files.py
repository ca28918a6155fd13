"""Copy, move and delete images: files, catalog, annotations and embeddings stay consistent, crash or not."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import pytest

import picsift
from picsift.core.catalog import content_id
from picsift.errors import PicsiftError

from . import fast_python
from .conftest import stamp_files
from .kill import KILL_AFTER


@pytest.fixture
def library(tmp_path: Path, stamps_root: Path, tiny_model: str) -> picsift.Library:
    folder = tmp_path / "images"
    for path in stamp_files(stamps_root, ("animals", "vehicles", "food"), 5):
        target = folder / path.relative_to(stamps_root).parts[0] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    lib = picsift.Library(folder, model=tiny_model, index="exact")
    lib.update(progress=False)
    return lib


def disk(root: Path) -> dict[str, str]:
    """Relative path -> content id of every image file under root (the workspace left out)."""
    return {p.relative_to(root).as_posix(): content_id(p.read_bytes())
            for p in sorted(root.rglob("*.png")) if ".picsift" not in p.parts}


def catalogued(lib: picsift.Library) -> dict[str, str]:
    return dict(lib.catalog.db.execute("SELECT path, image_id FROM files").fetchall())


def ids_in(lib: picsift.Library, folder: str) -> list[str]:
    return sorted(i for p, i in catalogued(lib).items() if p.startswith(folder + "/"))


def assert_consistent(lib: picsift.Library) -> None:
    """The catalog lists exactly the files on disk, and an update finds nothing to do."""
    assert catalogued(lib) == disk(lib.root)
    report = lib.update(progress=False)
    assert (report.added, report.removed, report.changed, report.embedded) == (0, 0, 0, 0), report.summary()


def test_copy_puts_real_files_in_the_dataset_with_their_labels(library: picsift.Library) -> None:
    lib = library
    animals = ids_in(lib, "animals")[:3]
    lib.labels.add_tag(animals[0], "cute")
    lib.labels.add_object(animals[0], "cat", bbox=(1, 2, 30, 40), author="ana")
    before = disk(lib.root)
    embedded = len(lib.store)

    copies = lib.files.copy(animals, "picked")

    assert sorted(copies["id"]) == animals
    after = disk(lib.root)
    assert {p: i for p, i in after.items() if p in before} == before  # the originals are untouched
    new = {p: i for p, i in after.items() if p not in before}
    assert sorted(new.values()) == animals and all(p.startswith("picked/") for p in new)
    assert set(lib.labels.dataset_items("picked")["path"]) == set(new)
    copy_of_first = next(p for p, i in new.items() if i == animals[0])
    assert lib.labels.tags(copy_of_first) == [("cute", None)]  # labels follow the content
    assert len(lib.store) == embedded  # a copy shares its original's embedding
    assert_consistent(lib)


def test_move_relocates_files_and_keeps_search_and_labels(library: picsift.Library) -> None:
    lib = library
    vehicles = ids_in(lib, "vehicles")
    lib.labels.add_object(vehicles[0], "car", bbox=(0, 0, 10, 10))
    lib.collections.write("wheels", vehicles[:3])
    before = disk(lib.root)

    moved = lib.files.move("wheels", "cars")  # a collection's name works as well as ids

    after = disk(lib.root)
    assert sorted(after.values()) == sorted(before.values())  # nothing lost, nothing doubled
    assert sorted(p.split("/")[0] for p in after if after[p] in vehicles[:3]) == ["cars"] * 3
    assert all(Path(p).is_file() for p in moved["path"]) and not any(Path(p).exists() for p in moved["source"])
    assert {str(p) for p in lib.paths(vehicles[:3]).values()} == set(moved["path"])
    assert len(lib.labels.objects(vehicles[0])) == 1
    results = lib.similar(vehicles[0], limit=1)
    assert results.df["path"][0] == str(lib.paths([vehicles[0]])[vehicles[0]])
    assert_consistent(lib)


def test_moving_two_files_of_one_name_keeps_both(library: picsift.Library) -> None:
    lib = library
    first = lib.root / "animals"
    twin = lib.root / "food" / next(first.iterdir()).name  # same name, other content
    shutil.copy2(next((lib.root / "food").iterdir()), twin)
    lib.update(progress=False)
    ids = [catalogued(lib)[f"animals/{twin.name}"], catalogued(lib)[f"food/{twin.name}"]]
    moved = lib.files.move(ids, "together")
    assert len({Path(p).name for p in moved["path"]}) == 2 and all(Path(p).is_file() for p in moved["path"])
    assert_consistent(lib)


def test_delete_removes_the_files_labels_and_embeddings_and_nothing_else(library: picsift.Library) -> None:
    lib = library
    food = ids_in(lib, "food")
    doomed, kept = food[:2], food[2:]
    for image_id in food:
        lib.labels.add_tag(image_id, "meal")
    lib.labels.open_issue(doomed[0], "blurry")
    lib.collections.write("lunch", food)
    before = disk(lib.root)
    embedded = len(lib.store)

    assert lib.files.delete(doomed) == 2

    after = disk(lib.root)
    assert after == {p: i for p, i in before.items() if i not in doomed}
    assert lib.filter(picsift.ImageTag("meal"), within=None).ids.tolist() == sorted(kept)
    assert lib.labels.issues().empty
    assert lib.collection("lunch").df["id"].tolist() == kept
    assert len(lib.store) == embedded - 2
    with pytest.raises(PicsiftError, match="no file"):
        lib.files.delete(doomed)
    assert_consistent(lib)


def test_bad_dataset_names_are_refused_before_anything_moves(library: picsift.Library) -> None:
    before = disk(library.root)
    for bad in ("", "../outside", "/abs", ".hidden"):
        with pytest.raises(PicsiftError, match="invalid dataset name"):
            library.files.move(ids_in(library, "animals"), bad)
    assert disk(library.root) == before


# The child kills itself (SIGKILL) right after the nth call of a real function inside an action.
CHILD = KILL_AFTER + textwrap.dedent(
    """
    import sys
    import picsift, picsift.core.files
    folder, spec, action, point, nth = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    dataset = sys.argv[6] if len(sys.argv) > 6 else "moved"
    lib = picsift.Library(folder, model=spec, index="exact")
    ids = sorted(i for p, i in lib.catalog.db.execute("SELECT path, image_id FROM files") if p.startswith("animals/"))
    files_module = picsift.core.files
    owner = {"rename": files_module.os, "unlink": files_module.Path, "plan": files_module.FileActions}[point]
    kill_after(owner, point, nth)
    if action == "move":
        lib.files.move(ids, dataset)
    else:
        lib.files.delete(ids)
    """
)


@pytest.mark.parametrize("action, point, nth", [
    ("move", "plan", 1),  # journalled, nothing moved yet
    ("move", "rename", 2),  # two of five files moved, none recorded
    ("move", "rename", 5),  # every file moved, none recorded
    ("delete", "unlink", 3),  # three of five files gone, none recorded
])
def test_a_crash_in_the_middle_of_an_action_loses_nothing(
    library: picsift.Library, tiny_model: str, action: str, point: str, nth: int,
) -> None:
    lib = library
    lib.labels.add_tag(ids_in(lib, "animals")[0], "kept-label")
    before = disk(lib.root)
    lib.close()
    child = fast_python.run([sys.executable, "-c", CHILD, str(lib.root), tiny_model, action, point, str(nth)],
                            capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr[-2000:]  # it really died mid-action

    reopened = picsift.Library(lib.root, model=tiny_model, index="exact")  # opening finishes or undoes it
    after = disk(reopened.root)
    if action == "move":
        assert sorted(after.values()) == sorted(before.values())  # every image still has exactly its file
    else:
        assert set(after.items()) <= set(before.items()) and len(after) >= len(before) - nth
    assert reopened.catalog.db.execute("SELECT COUNT(*) FROM file_actions").fetchone()[0] == 0
    assert_consistent(reopened)
    survivors = set(after.values())
    first = sorted(i for p, i in before.items() if p.startswith("animals/"))[0]
    assert (reopened.labels.tags(first) == [("kept-label", None)]) == (first in survivors)
    if action == "move":  # and the interrupted move can simply be run again
        reopened.files.move(sorted(i for p, i in before.items() if p.startswith("animals/")), "moved")
        assert sorted(p.split("/")[0] for p in disk(reopened.root)) == ["food"] * 5 + ["moved"] * 5 + ["vehicles"] * 5
        assert_consistent(reopened)


def test_labels_of_files_removed_outside_picsift_are_kept_until_pruned(library: picsift.Library) -> None:
    lib = library
    gone = ids_in(lib, "food")[0]
    lib.labels.add_tag(gone, "meal")
    lib.labels.add_object(ids_in(lib, "animals")[0], "cat", bbox=(0, 0, 3, 3))
    path = lib.paths([gone])[gone]
    data = path.read_bytes()
    path.unlink()
    lib.update(progress=False)
    assert lib.labels.orphans() == [gone]
    path.write_bytes(data)  # the file comes back: so do its labels
    lib.update(progress=False)
    assert lib.labels.orphans() == [] and lib.labels.tags(gone) == [("meal", None)]
    path.unlink()
    lib.update(progress=False)
    assert lib.labels.prune() == 1
    assert lib.labels.orphans() == [] and lib.labels.tags(gone) == []
    assert len(lib.labels.objects()) == 1  # the labels of images still here are untouched


# -- the only copy of an image is never lost, and nothing outside the library is touched --------------------------

def test_moving_into_a_folder_that_is_the_source_through_a_link_keeps_the_file(library: picsift.Library) -> None:
    lib = library
    (lib.root / "zoo").symlink_to("animals", target_is_directory=True)  # zoo/x.png is animals/x.png
    animals = ids_in(lib, "animals")
    before = disk(lib.root / "animals")

    lib.files.move(animals, "zoo")

    assert disk(lib.root / "animals") == before  # the files are where they were, none unlinked
    assert sorted(lib.labels.dataset_items("zoo")["id"]) == animals
    assert all(p.is_file() for p in lib.paths(animals).values())
    lib.update(progress=False)
    assert ids_in(lib, "animals") == animals


def test_recovering_a_move_onto_the_same_file_keeps_it(library: picsift.Library, tiny_model: str) -> None:
    lib = library
    (lib.root / "zoo").symlink_to("animals", target_is_directory=True)
    before = disk(lib.root / "animals")
    lib.close()
    child = fast_python.run([sys.executable, "-c", CHILD, str(lib.root), tiny_model, "move", "plan", "1", "zoo"],
                            capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr[-2000:]  # killed with the moves journalled, none done

    reopened = picsift.Library(lib.root, model=tiny_model, index="exact")  # recovery finishes the moves
    assert disk(reopened.root / "animals") == before
    assert reopened.catalog.db.execute("SELECT COUNT(*) FROM file_actions").fetchone()[0] == 0


def write_outside(library: picsift.Library) -> tuple[Path, str]:
    """A copy of a library image beside the library folder, and its id."""
    outside = library.root.parent / "outside" / "precious.png"
    outside.parent.mkdir()
    image_id = ids_in(library, "food")[0]
    shutil.copy2(library.paths([image_id])[image_id], outside)
    return outside, image_id


@pytest.mark.parametrize("path", ["../outside/precious.png", "OUTSIDE"])
def test_catalog_paths_outside_the_library_are_never_acted_on(library: picsift.Library, path: str) -> None:
    lib = library
    outside, image_id = write_outside(lib)
    path = str(outside) if path == "OUTSIDE" else path
    with lib.catalog.transaction() as db:  # a crafted workspace: a dataset item recorded outside the root
        db.execute("INSERT INTO datasets(name, folder, source, created) VALUES ('evil', 'evil', '{}', 0)")
        db.execute("INSERT INTO dataset_items(dataset, path, image_id) VALUES (1, ?, ?)", (path, image_id))
    before = disk(lib.root)
    for act in (lambda: lib.files.delete([image_id]), lambda: lib.files.move([image_id], "taken"),
                lambda: lib.files.copy([image_id], "taken")):
        with pytest.raises(PicsiftError, match="outside the library"):
            act()
    assert outside.is_file() and disk(lib.root) == before
    assert lib.catalog.db.execute("SELECT COUNT(*) FROM file_actions").fetchone()[0] == 0


def test_crafted_dataset_folders_outside_the_library_are_refused(library: picsift.Library) -> None:
    lib = library
    with lib.catalog.transaction() as db:
        db.execute("INSERT INTO datasets(name, folder, source, created) VALUES ('away', '../away', '{}', 0)")
    with pytest.raises(PicsiftError, match="outside the library"):
        lib.files.copy(ids_in(lib, "food")[:1], "away")
    assert not (lib.root.parent / "away").exists()


def test_journal_rows_outside_the_library_are_dropped_not_run(library: picsift.Library, tiny_model: str) -> None:
    lib = library
    outside, image_id = write_outside(lib)
    inside = next(p for p, i in catalogued(lib).items() if i == image_id)
    with lib.catalog.transaction() as db:  # a crafted workspace: interrupted actions that reach outside
        db.execute("INSERT INTO datasets(name, folder, source, created) VALUES ('x', 'x', '{}', 0)")
        db.executemany("INSERT INTO file_actions(action, source, target, image_id, dataset) VALUES (?, ?, ?, ?, ?)", [
            ("move", "../outside/precious.png", inside, image_id, "x"),  # "finishing" it would unlink the source
            ("move", str(outside), inside, image_id, "x"),
            ("delete", "../outside/precious.png", None, image_id, None),
            ("copy", inside, "../outside/new.png", image_id, "x"),
        ])
    before = disk(lib.root)
    lib.close()
    reopened = picsift.Library(lib.root, model=tiny_model, index="exact")
    assert outside.is_file() and disk(reopened.root) == before
    assert reopened.catalog.db.execute("SELECT COUNT(*) FROM file_actions").fetchone()[0] == 0
    assert_consistent(reopened)


def test_video_frames_in_a_workspace_outside_the_root_can_still_be_deleted(tmp_path: Path, stamps_root: Path) -> None:
    (tmp_path / "images").mkdir()
    lib = picsift.Library(tmp_path / "images", workspace=tmp_path / "work")
    frame = lib.workspace / "frames" / "0123456789abcdef" / "000001000.jpg"  # where update() caches frames
    frame.parent.mkdir(parents=True)
    shutil.copy2(stamp_files(stamps_root, ("food",), 1)[0], frame)
    image_id = content_id(frame.read_bytes())
    with lib.catalog.transaction() as db:  # the row update() writes for a frame: an absolute path in the workspace
        lib.catalog.upsert_files(db, [picsift.core.catalog.FileRow(str(frame), frame.stat().st_size, 0, image_id,
                                                              None, None, None)])
    assert lib.files.delete([image_id]) == 1
    assert not frame.exists() and catalogued(lib) == {}
    with lib.catalog.transaction() as db:  # but not an absolute path beside the workspace
        lib.catalog.upsert_files(db, [picsift.core.catalog.FileRow(str(tmp_path / "work-other" / "x.jpg"), 1, 0,
                                                              image_id, None, None, None)])
    with pytest.raises(PicsiftError, match="outside the library"):
        lib.files.delete([image_id])
