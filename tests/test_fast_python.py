"""The suite's forked children (tests/fast_python.py) behave as ``subprocess.run`` of a fresh ``python`` does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from . import fast_python

SCRIPTS = {
    "argv, path, cwd, env, stdout and stderr": (
        "import os, sys; print(sys.argv, repr(sys.path[0]), os.getcwd(), os.environ.get('PICSIFT_PROBE'));"
        " print('to stderr', file=sys.stderr); print(__name__, sorted(k for k in globals() if k[:2] != '__'))"),
    "exit code": "import sys; print('partial'); sys.exit(3)",
    "exit message": "raise SystemExit('picsift: error: one line')",
    "uncaught exception": "def f():\n    return 1 / 0\nf()",
    "killed by a signal": "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
    "newlines and bytes": "import sys; sys.stdout.write('a\\r\\nb\\rc\\u00e9'); sys.stdout.flush()",
    "threads and atexit": ("import atexit, threading, time; atexit.register(print, 'atexit ran');"
                           " threading.Thread(target=lambda: (time.sleep(0.2), print('thread joined'))).start()"),
}


def last_frame(stderr: str) -> str:
    """A traceback's last frame and message (the zygote's own frames come before the script's)."""
    return "\n".join(stderr.strip().splitlines()[-3:])


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_a_forked_child_matches_a_fresh_interpreter(name: str, tmp_path: Path) -> None:
    args = [sys.executable, "-c", SCRIPTS[name], "first arg", "--flag"]
    env = {**os.environ, "PICSIFT_PROBE": "probe value"}
    fresh = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    forked = fast_python.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert forked.returncode == fresh.returncode
    assert forked.stdout == fresh.stdout
    if name == "uncaught exception":
        assert last_frame(forked.stderr) == last_frame(fresh.stderr)
    else:
        assert forked.stderr == fresh.stderr


def test_python_m_picsift_runs_the_command_line_with_its_exit_code(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "picsift", "status", str(tmp_path / "missing")]
    fresh = subprocess.run(args, capture_output=True, text=True, timeout=300)
    forked = fast_python.run(args, capture_output=True, text=True, timeout=300)
    assert forked.returncode == fresh.returncode == 1
    assert forked.stderr == fresh.stderr and forked.stderr.startswith("picsift: error: ")


def test_a_child_past_its_timeout_is_killed_and_raises_as_subprocess_does() -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        fast_python.run([sys.executable, "-c", "import time; time.sleep(60)"], capture_output=True, timeout=1)
    assert fast_python.run([sys.executable, "-c", "print('still serving')"], capture_output=True,
                           text=True).stdout == "still serving\n"


def kernel_session(manager_class: type, cwd: Path, now: bool) -> tuple[list[str], str, int]:
    """What a kernel prints, the error an interrupt of a busy cell gives, and the kernel's pid (ended after)."""
    manager = manager_class(kernel_name="python3")
    # a relative $PYTHONPATH entry resolves against the kernel's directory, not the zygote's
    manager.start_kernel(cwd=str(cwd), env={**os.environ, "PICSIFT_PROBE": "probe value", "PYTHONPATH": "on-path"})
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        printed: list[str] = []

        def keep(message: dict[str, Any]) -> None:
            if message["msg_type"] == "stream":
                printed.append(message["content"]["text"])

        client.execute_interactive(
            "import os, sys\nprint(os.getcwd(), os.environ['PICSIFT_PROBE'], repr(sys.path[:5]), 'torch' in dir())\n"
            "print(os.getpid())", output_hook=keep, timeout=60)
        lines = "".join(printed).splitlines()
        printed, pid = lines[:-1], int(lines[-1])
        client.execute("import time\ntime.sleep(60)")
        time.sleep(1)
        manager.interrupt_kernel()
        reply = client.get_shell_msg(timeout=30)
        while reply["msg_type"] != "execute_reply" or reply["content"]["execution_count"] < 2:
            reply = client.get_shell_msg(timeout=30)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=now)
    return printed, reply["content"].get("ename", ""), pid


def test_a_forked_kernel_runs_interrupts_and_ends_as_a_fresh_one_does(tmp_path: Path) -> None:
    from jupyter_client.manager import KernelManager

    fresh = kernel_session(KernelManager, tmp_path, now=False)
    forked = kernel_session(fast_python.kernel_manager_class(), tmp_path, now=False)
    killed = kernel_session(fast_python.kernel_manager_class(), tmp_path, now=True)  # jupyter_client's last resort
    # working directory, environment, import path, a clean namespace, the interrupt
    assert forked[:2] == killed[:2] == fresh[:2]
    assert fresh[0][0].startswith(f"{tmp_path} probe value [{str(tmp_path / 'on-path')!r}, ")
    assert fresh[0][0].endswith("False")
    assert fresh[1] == "KeyboardInterrupt"
    for pid in (fresh[2], forked[2], killed[2]):  # each kernel ended, the one whose shim was killed too
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie":
            time.sleep(0.1)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", pid
