"""``picsift serve``'s arguments and errors, and arrays that a widget manager sends as JSON (marimo), without a
browser (tests/e2e/test_serve_in_browser.py and test_marimo_in_browser.py run them for real)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from picsift.cli import build_parser
from picsift.cli.serve import page_notebook
from picsift.widgets._protocol import array_from_json
from picsift.widgets._selection import selection_from_json

from . import fast_python


def test_serve_defaults_are_private_a_free_port_and_a_random_token() -> None:
    args = build_parser().parse_args(["serve", "photos"])
    assert (args.host, args.port, args.token, args.no_browser) == ("127.0.0.1", 0, None, False)
    args = build_parser().parse_args(["serve", "photos", "--port", "9000", "--host", "0.0.0.0", "--token", "t",
                                      "--no-browser", "--model", "m", "--index", "exact", "--workspace", "w"])
    assert (args.port, args.host, args.token, args.no_browser, args.model, args.index, args.workspace) == (
        9000, "0.0.0.0", "t", True, "m", "exact", "w")


def test_serving_a_missing_folder_fails_in_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no such folder"
    result = fast_python.run([sys.executable, "-m", "picsift", "serve", str(missing), "--no-browser"],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "no such folder" in result.stderr and "is not a folder" in (
        result.stderr)


def test_serving_on_a_port_in_use_fails_in_one_line_naming_it(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = fast_python.run([sys.executable, "-m", "picsift", "serve", str(tmp_path), "--no-browser", "--port",
                                 str(port)], capture_output=True, text=True, timeout=120,
                                 env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr


def test_the_page_notebook_carries_options_as_data_not_code(tmp_path: Path) -> None:
    tricky = "x'); import os; os.remove('y"  # a quote in a path must not become code
    notebook = page_notebook(tmp_path / "images", {"model": tricky, "index": None}, tmp_path)
    source = notebook["cells"][0]["source"]
    namespace: dict[str, object] = {}
    cwd = os.getcwd()
    try:  # run the cell as the kernel would, less the page itself
        exec(source.replace("page(_options.pop('folder'), **_options)", "result = dict(_options)"), namespace)
        assert os.getcwd() == str(tmp_path)  # relative options mean what they meant where serve ran
    finally:
        os.chdir(cwd)
    assert namespace["result"] == {"folder": str(tmp_path / "images"), "model": tricky, "index": None}


@pytest.mark.parametrize("dtype", ["int32", "float32", "uint8"])
def test_a_typed_array_sent_as_json_reads_like_a_buffer(dtype: str) -> None:
    values = np.array([3, 1, 250], dtype=dtype)
    as_json = {"view": {str(i): v.item() for i, v in enumerate(values)}, "dtype": dtype, "shape": [3]}
    assert np.array_equal(array_from_json(as_json), values)
    assert np.array_equal(array_from_json({**as_json, "view": values.tobytes()}), values)


def test_a_bit_selection_sent_as_json_reads_like_a_buffer() -> None:
    bits = np.packbits(np.isin(np.arange(20), [0, 3, 19]), bitorder="little")
    as_json = {"view": {str(i): int(b) for i, b in enumerate(bits)}, "dtype": "uint8", "shape": [3], "bits": 20}
    assert selection_from_json(as_json).tolist() == [0, 3, 19]
    with pytest.raises(TypeError, match="arrived as str"):
        selection_from_json({**as_json, "view": "AAAA"})


def test_a_second_page_follows_an_update_another_process_runs(tmp_path: Path, stamps_root: Path,
                                                               tiny_model: str) -> None:
    """Two tabs of ``picsift serve`` open on a folder not embedded yet: the second one's update finds the
    workspace busy and follows the first one's progress instead of showing an error."""
    import shutil
    import time

    from picsift import Library
    from picsift.widgets.prompt import PromptBox

    folder = tmp_path / "images"
    for path in sorted((stamps_root / "animals").rglob("*.png"))[:4]:
        folder.mkdir(exist_ok=True)
        shutil.copy2(path, folder / path.name)
    with Library(folder, model=tiny_model, index="exact") as library:
        holder = subprocess.Popen(  # another process holds the workspace, as a running update does
            [sys.executable, "-c", "import sys\nfrom pathlib import Path\n"
             "from picsift.core.workspace import exclusive\n"
             f"with exclusive(Path({str(library.workspace)!r})):\n"
             "    print('held', flush=True); sys.stdin.read()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            prompt = PromptBox(library)
            prompt.update_library(background=False)
            assert prompt.error == "" and not prompt.ready
            assert prompt._follower is not None and prompt._follower.is_alive()
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(timeout=60)
        library.update(progress=False)  # the other process's update, done
        deadline = time.monotonic() + 60
        while not prompt.ready and time.monotonic() < deadline:
            time.sleep(0.2)
        assert prompt.ready and prompt.error == ""
        prompt.close()
