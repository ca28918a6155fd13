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

Jupyter kernels too (:func:`kernel_manager_class`, for ``nbclient``): jupyter_client starts a small shim instead of
``python -m ipykernel_launcher``, and the shim has a zygote that has also imported ipykernel fork the kernel, hands
it its stdin/stdout/stderr and environment, forwards the signals jupyter_client sends (interrupt, terminate), and
ends with the kernel's exit status; a kernel whose shim is killed is killed too.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import Any

#: imported once by each zygote: the heavy third-party imports every picsift child makes (none of picsift itself)
PRELOAD = ("numpy", "PIL.Image", "pandas", "torch", "torchvision", "transformers", "open_clip")
#: environment variables that none of PRELOAD reads: calls may differ in these and share a zygote (pytest names the
#: running test in PYTEST_CURRENT_TEST)
PRIVATE_PREFIXES = ("PICSIFT_", "AWS_", "PYTEST_CURRENT_TEST")
#: a kernel zygote imports the kernel as well (IPython, pyzmq, tornado; none of them starts a thread on import)
KERNEL_PRELOAD = (*PRELOAD, "ipykernel.kernelapp")
#: variables jupyter_client sets for each kernel it starts (no preloaded library reads them)
KERNEL_PRIVATE_PREFIXES = (*PRIVATE_PREFIXES, "JPY_", "IPY_")

#: The process jupyter_client starts for a kernel: asks the suite's kernel launcher (a Unix socket, argv[1]) for
#: `python -m ipykernel_launcher ARGS` forked from a zygote, then stands for it (signals forwarded, its exit status).
SHIM = r'''
import json, os, signal, socket, sys
launcher = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
launcher.connect(sys.argv[1])
request = {"mode": "-m", "args": sys.argv[2:], "env": dict(os.environ), "cwd": os.getcwd()}
socket.send_fds(launcher, [json.dumps(request).encode()], [0, 1, 2])
pid = int(launcher.recv(64).split()[1])
def forward(signum, frame):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(signum, forward)
reply = launcher.recv(64)
code = int(reply.split()[1]) if reply.startswith(b"rc ") else 1
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
'''

ZYGOTE = r'''
import gc, json, os, runpy, socket, sys
START = os.getcwd()  # where this interpreter resolved $PYTHONPATH's relative entries
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
for entry in filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)):  # as a fresh interpreter resolves them
    here, there = os.path.abspath(os.path.join(START, entry)), os.path.abspath(entry)
    if here != there and here in sys.path:
        sys.path[sys.path.index(here)] = there
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
    def __init__(self, env: Mapping[str, str], preload: Sequence[str] = PRELOAD):
        self.env = dict(env)
        self.busy = False  # a kernel's zygote, while it waits on its kernel
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, str(theirs.fileno()), ",".join(preload)], pass_fds=[theirs.fileno()],
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
        pid = self.start(request, fds)
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

    def start(self, request: dict[str, Any], fds: list[int]) -> int:
        """Fork a child for ``request``: its pid (:meth:`wait_for` it, or the zygote serves no other)."""
        socket.send_fds(self.control, [json.dumps(request).encode()], fds)
        reply = self.control.recv(64)
        if not reply.startswith(b"pid "):
            raise RuntimeError(f"the test zygote answered {reply!r}")
        return int(reply.split()[1])

    def wait_for(self, pid: int, shim: socket.socket) -> int:
        """The exit code of the child ``pid`` (a kernel); killed first if its ``shim`` goes away."""
        import select

        while self.control not in select.select([self.control, shim], [], [])[0]:
            if not shim.recv(64):  # the shim was killed (jupyter_client's last resort): so is its kernel
                os.kill(pid, signal.SIGKILL)
                break
        return int(self.control.recv(64).split()[1])

    def close(self) -> None:
        self.control.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_zygotes: dict[tuple[tuple[str, str], ...], _Zygote] = {}


def _key(env: Mapping[str, str], private: tuple[str, ...] = PRIVATE_PREFIXES) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in env.items() if not k.startswith(private)))


def _zygote(env: Mapping[str, str]) -> _Zygote:
    key = _key(env)
    if key not in _zygotes:
        _zygotes[key] = _Zygote(env)
    return _zygotes[key]


@atexit.register
def close_all() -> None:
    """End every zygote this process started (each ends itself too when this process's end closes its socket)."""
    global _launcher
    while _zygotes:
        _zygotes.popitem()[1].close()
    if _launcher is not None:
        _launcher, launcher = None, _launcher
        launcher.close()


class _KernelLauncher:
    """A Unix socket in this test process where :data:`SHIM` asks for kernels, each forked by a kernel zygote (one
    per environment that is not busy with a kernel: kernels that live at once get zygotes of their own)."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="psk")  # short: a socket's path must fit 107 bytes
        self.path = os.path.join(self.folder, "kernels")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.server.bind(self.path)
        self.server.listen()
        self.zygotes: list[tuple[tuple[tuple[str, str], ...], _Zygote]] = []  # (key, zygote)
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, name="fast-python-kernels", daemon=True).start()

    def _accept(self) -> None:
        while True:
            shim, _ = self.server.accept()
            threading.Thread(target=self._serve, args=(shim,), daemon=True).start()

    def _zygote(self, env: Mapping[str, str]) -> _Zygote:
        key = _key(env, KERNEL_PRIVATE_PREFIXES)
        with self.lock:
            for known, zygote in self.zygotes:
                if known == key and not zygote.busy:
                    zygote.busy = True
                    return zygote
        zygote = _Zygote(env, KERNEL_PRELOAD)
        zygote.busy = True
        with self.lock:
            self.zygotes.append((key, zygote))
        return zygote

    def _serve(self, shim: socket.socket) -> None:
        with shim:
            message, fds, _, _ = socket.recv_fds(shim, 1 << 20, 3)
            request = json.loads(message)
            zygote = self._zygote(request["env"])
            try:
                try:
                    pid = zygote.start(request, fds)
                finally:
                    for fd in fds:
                        os.close(fd)
                shim.sendall(b"pid %d" % pid)
                returncode = zygote.wait_for(pid, shim)
                with contextlib.suppress(OSError):
                    shim.sendall(b"rc %d" % returncode)
            finally:
                zygote.busy = False

    def close(self) -> None:
        with self.lock:
            zygotes, self.zygotes = self.zygotes, []
        for _, zygote in zygotes:
            zygote.close()
        self.server.close()
        shutil.rmtree(self.folder, ignore_errors=True)


_launcher: _KernelLauncher | None = None


def kernel_manager_class() -> type:
    """A jupyter_client ``KernelManager`` whose Python kernels are forked from a kernel zygote (``nbclient``'s
    ``kernel_manager_class``); with ``PICSIFT_TEST_FRESH_PYTHON=1``, jupyter_client's own."""
    from jupyter_client.manager import KernelManager

    class ForkedKernelManager(KernelManager):  # type: ignore[misc]
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            global _launcher
            command: list[str] = super().format_kernel_cmd(extra_arguments)
            if os.environ.get("PICSIFT_TEST_FRESH_PYTHON") == "1" or command[:2] != [sys.executable, "-m"]:
                return command
            if _launcher is None:
                _launcher = _KernelLauncher()
            return [sys.executable, "-c", SHIM, _launcher.path, *command[2:]]

    return ForkedKernelManager


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
