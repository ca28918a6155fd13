"""Run ``python -m picsift ...`` or ``python -c CODE ...`` as a real child process without paying its imports again.

A fresh interpreter spends about 7 CPU s importing torch, torchvision, transformers and open_clip before picsift's
code runs, and the suite starts the command line and its crash-test children about a hundred times. :func:`run` takes
:func:`subprocess.run`'s arguments and gives its :class:`subprocess.CompletedProcess`, but the child is forked from a
"zygote": an interpreter started once per test process (and per environment) that has imported those libraries and
nothing of picsift. Each child is still a process of its own: its own pid, environment, working directory, argv,
stdin/stdout/stderr (the caller's, handed over a Unix socket), and it ends the way ``python`` does (exit code from
``SystemExit``, a traceback and 1 for an uncaught exception, ``-N`` when killed by signal N). It imports picsift
itself, so the code under test and what picsift reads at import come from the child's own environment.

Libraries read some environment variables when imported (``HF_HUB_OFFLINE``, ``OMP_NUM_THREADS``, ...): a zygote
serves only calls whose environment equals its own apart from variables no preloaded library reads (``PICSIFT_*``,
``AWS_*``, ``PYTEST_CURRENT_TEST``); any other environment gets a zygote of its own. Anything :func:`run` does not
model (``input=``, a ``python`` other than this one, options before ``-m``/``-c``) goes to :func:`subprocess.run`
unchanged, and ``PICSIFT_TEST_FRESH_PYTHON=1`` sends every call there.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

#: imported once by each zygote: the heavy third-party imports every picsift child makes (none of picsift itself)
PRELOAD = ("numpy", "PIL.Image", "pandas", "torch", "torchvision", "transformers", "open_clip")
#: environment variables that none of PRELOAD reads: calls may differ in these and share a zygote (pytest names the
#: running test in PYTEST_CURRENT_TEST)
PRIVATE_PREFIXES = ("PICSIFT_", "AWS_", "PYTEST_CURRENT_TEST")

ZYGOTE = r'''
import gc, json, os, runpy, socket, sys
for name in sys.argv[2].split(","):
    try:
        __import__(name)
    except ImportError:  # an optional library this install lacks: the child finds it missing too
        pass
gc.freeze()  # the children's collections skip what is already here: its pages stay shared
control = socket.socket(fileno=int(sys.argv[1]))
control.sendall(b"ready")
request = None
while request is None:
    try:
        message, fds, _, _ = socket.recv_fds(control, 1 << 20, 3)
    except ConnectionError:
        message = b""
    if not message:
        raise SystemExit(0)
    pid = os.fork()
    if pid == 0:
        request = json.loads(message)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        continue
    for fd in fds:
        os.close(fd)
    control.sendall(b"pid %d" % pid)
    _, status = os.waitpid(pid, 0)
    control.sendall(b"rc %d" % os.waitstatus_to_exitcode(status))
# the child: become `python -m MODULE ARGS` or `python -c CODE ARGS`
control.close()
for fd in fds:
    os.close(fd)
del control, fds, message, pid
os.environ.clear()
os.environ.update(request["env"])
os.chdir(request["cwd"])
sys.stdin, sys.stdout, sys.stderr = (
    open(0, "r", closefd=False),
    open(1, "w", closefd=False, errors=sys.stdout.errors),
    open(2, "w", closefd=False, errors="backslashreplace", buffering=1),
)
sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
if request["mode"] == "-m":
    sys.argv = list(request["args"])  # the module's name, then its arguments; runpy puts the module's path first
    sys.path[0] = os.getcwd()
    del request
    runpy._run_module_as_main(sys.argv[0])
else:
    sys.argv = ["-c", *request["args"]]
    sys.path[0] = ""
    __code = compile(request["code"], "<string>", "exec")
    for name in [name for name in globals() if not name.startswith("__")]:
        del globals()[name]
    globals().pop("name", None)
    exec(__code)
'''


class _Zygote:
    def __init__(self, env: Mapping[str, str]):
        self.env = dict(env)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, str(theirs.fileno()), ",".join(PRELOAD)], pass_fds=[theirs.fileno()],
            env=self.env, stdin=subprocess.DEVNULL,
            # SIGINT at its default, as in a terminal (a shell's background job starts its children with it ignored)
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        theirs.close()
        self.control = ours
        if self.control.recv(16) != b"ready":
            raise RuntimeError("the test zygote did not start")

    def run(self, request: dict[str, Any], fds: list[int], timeout: float | None) -> tuple[int, bool]:
        """Fork a child for ``request``; its exit code, and whether it was killed for running past ``timeout``."""
        socket.send_fds(self.control, [json.dumps(request).encode()], fds)
        reply = self.control.recv(64)
        if not reply.startswith(b"pid "):
            raise RuntimeError(f"the test zygote answered {reply!r}")
        pid = int(reply.split()[1])
        self.control.settimeout(timeout)
        timed_out = False
        try:
            reply = self.control.recv(64)
        except TimeoutError:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            self.control.settimeout(None)
            reply = self.control.recv(64)
        finally:
            self.control.settimeout(None)
        return int(reply.split()[1]), timed_out

    def close(self) -> None:
        self.control.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_zygotes: dict[tuple[tuple[str, str], ...], _Zygote] = {}


def _key(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in env.items() if not k.startswith(PRIVATE_PREFIXES)))


def _zygote(env: Mapping[str, str]) -> _Zygote:
    key = _key(env)
    if key not in _zygotes:
        _zygotes[key] = _Zygote(env)
    return _zygotes[key]


@atexit.register
def close_all() -> None:
    """End every zygote this process started (each ends itself too when this process's end closes its socket)."""
    while _zygotes:
        _zygotes.popitem()[1].close()


def run(args: Sequence[str], *, capture_output: bool = False, text: bool = False, timeout: float | None = None,
        env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None, check: bool = False,
        **other: Any) -> subprocess.CompletedProcess[Any]:
    """:func:`subprocess.run` of ``[sys.executable, "-m"|"-c", ...]``, in a child forked from a zygote."""
    args = [str(a) for a in args]
    if (other or os.environ.get("PICSIFT_TEST_FRESH_PYTHON") == "1" or len(args) < 3 or args[0] != sys.executable
            or args[1] not in ("-m", "-c")):
        return subprocess.run(args, capture_output=capture_output, text=text, timeout=timeout, env=env, cwd=cwd,
                              check=check, **other)
    request: dict[str, Any] = {"mode": args[1], "env": dict(os.environ if env is None else env),
                               "cwd": os.path.abspath(cwd if cwd is not None else os.getcwd())}
    if args[1] == "-m":
        request["args"] = args[2:]
    else:
        request["code"], request["args"] = args[2], args[3:]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        fds = [0, out.fileno(), err.fileno()] if capture_output else [0, 1, 2]
        returncode, timed_out = _zygote(request["env"]).run(request, fds, timeout)
        output: Any = None
        errors: Any = None
        if capture_output:
            out.seek(0)
            err.seek(0)
            output, errors = out.read(), err.read()
            if text:  # as subprocess decodes: the locale's encoding, universal newlines
                output, errors = (io.TextIOWrapper(io.BytesIO(b)).read() for b in (output, errors))
    if timed_out:
        raise subprocess.TimeoutExpired(args, timeout or 0, output, errors)
    result = subprocess.CompletedProcess(args, returncode, output, errors)
    if check:
        result.check_returncode()
    return result
