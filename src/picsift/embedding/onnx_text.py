"""A Hugging Face text tower (the offline model's MiniLM) run by onnxruntime: the vectors of the torch pass
(cosine >= 0.9999, checked on every load) for about a third of its CPU time (bench/text_query.py).

A prompt is ~60 small operations; torch spends most of a MiniLM pass in its own per-operation overhead, which
onnxruntime's fused graph does not have. The tower is exported once per model into the model cache
(:func:`picsift.embedding.offline_model.cache_dir`) as ``text-<key>.onnx``, the key derived from the model's
identity (which changes whenever its weights could), the export format and the opset. The cache is a folder
anyone could have written: a file is read through :class:`~picsift.workspace_files.WorkspaceFiles` (no link
followed, bounded), handed to onnxruntime as bytes (so it cannot reach other files as external data), and used
only when its vectors agree with torch's on :data:`PROBES`; otherwise it is rebuilt, with a log line. Without
onnxruntime and onnx (``pip install "picsift[offline]"``), or when the export fails, torch embeds the prompts.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..workspace_files import WorkspaceFiles

log = logging.getLogger(__name__)

#: Bumped whenever the exported graph changes shape or meaning, so old cache files are not picked up.
EXPORT_FORMAT = 1
OPSET = 17
#: The least cosine between a cached tower's vectors and torch's on :data:`PROBES` (issue 25: >= 0.9999).
MIN_COSINE = 0.9999
#: Prompts of several lengths, embedded together (so padding and its mask are exercised), to check a tower
#: (tests/test_onnx_text.py checks many more, up to the context length).
PROBES = ("a photo of a dog", "a red bicycle leaning on a brick wall at night, seen from the street", "x",
          "ünïcödé 猫 🐱", "")
#: The largest tower file read (onnx's protobuf limit).
FILE_LIMIT = 2 * 2**30


class OnnxTextTower:
    """``tokens (n, length) int64 -> features (n, dim) float32`` (not normalised), as the torch tower's forward."""

    def __init__(self, session: Any, name: str):
        self._session = session
        self._input = session.get_inputs()[0].name
        self.name = name

    def __repr__(self) -> str:
        return f"OnnxTextTower({self.name!r})"

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {self._input: np.ascontiguousarray(tokens, np.int64)})[0],
                          np.float32)


def file_name(identity: str) -> str:
    """The cache file of the model ``identity``'s text tower."""
    key = hashlib.sha256(f"{identity}|format{EXPORT_FORMAT}|opset{OPSET}".encode()).hexdigest()[:16]
    return f"text-{key}.onnx"


def load_text_tower(text: Any, tokens: Any, identity: str, folder: Path) -> OnnxTextTower | None:
    """The onnxruntime twin of the torch module ``text`` (an open_clip ``HFTextEncoder``), or None.

    ``tokens`` are :data:`PROBES` tokenized (padding trimmed); the tower is used only when its vectors for them
    agree with ``text``'s. The file in ``folder`` is reused when it agrees, rebuilt (and written atomically) when
    it is missing, unreadable or disagrees. None (torch stays in use) when onnxruntime or onnx is not installed
    or the export does not agree either; each case says so in the log.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        log.info("onnxruntime is not installed: text prompts run on torch (pip install \"picsift[offline]\" for "
                 "about 3x less CPU per prompt)")
        return None
    import torch

    with torch.inference_mode():
        reference = _unit(text(tokens).float().numpy())
    probe = tokens.numpy()
    files = WorkspaceFiles(folder)
    name = file_name(identity)
    cached = _read(files, name)
    if cached is not None:
        problem, tower = _checked(cached, name, probe, reference)
        if tower is not None:
            return tower
        log.warning("the cached text tower %s %s: rebuilding it", files.path(name), problem)
    log.info("exporting the text tower to ONNX, once per model (a few seconds)")
    try:
        data = _export(text, tokens)
    except Exception as e:  # the exporter fails in many ways (a missing onnx, an operator it does not know)
        log.warning("cannot export the text tower to ONNX (%s: %s): text prompts run on torch", type(e).__name__, e)
        return None
    problem, tower = _checked(data, name, probe, reference)
    if tower is None:
        log.warning("the exported text tower %s: text prompts run on torch", problem)
        return None
    try:
        files.write_bytes(name, data)
    except OSError as e:  # a read-only or full cache: the tower still serves this process
        log.warning("cannot keep the text tower in %s (%s); it is rebuilt next time", files.path(name), e)
    log.info("text prompts run on onnxruntime (%s)", files.path(name))
    return tower


def _read(files: WorkspaceFiles, name: str) -> bytes | str | None:
    """The file's bytes; None when there is none; or why it cannot be read (a link, a special file, too large)."""
    try:
        return files.read_bytes(name, FILE_LIMIT)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        return f"cannot be read ({e})"


def _checked(data: bytes | str, name: str, probe: np.ndarray,
             reference: np.ndarray) -> tuple[str, OnnxTextTower | None]:
    """A tower from ``data`` whose vectors for ``probe`` agree with ``reference``; else why not."""
    if isinstance(data, str):
        return data, None
    import onnxruntime as ort

    options = ort.SessionOptions()
    # one thread: a prompt is too little work to share, and the score scan after it wants both cores
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        tower = OnnxTextTower(ort.InferenceSession(data, options, providers=["CPUExecutionProvider"]), name)
        vectors = tower(probe)
    except Exception as e:  # onnxruntime raises its own types for a corrupt or foreign graph
        return f"is not a usable ONNX graph ({type(e).__name__}: {str(e)[:200]})", None
    if vectors.shape != reference.shape:
        return f"gives vectors of shape {vectors.shape}, not {reference.shape}", None
    cosine = float(np.min(np.sum(_unit(vectors) * reference, axis=1)))
    if not cosine >= MIN_COSINE:
        return f"does not match the model (cosine {cosine:.6f} < {MIN_COSINE})", None
    return "", tower


def _export(text: Any, tokens: Any) -> bytes:
    """The ONNX graph of ``text`` with the batch and the token count left free."""
    import torch

    out = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python branches it fixes (none depend on shape)
        torch.onnx.export(text, (tokens,), out,  # type: ignore[arg-type]  # the TorchScript exporter takes a file
                          input_names=["input_ids"], output_names=["features"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "features": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    return out.getvalue()


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
