"""The open_clip embedder: one model, images and text into the same L2-normalised space."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from ..errors import ModelUnavailableError, UnnamedModelError
from . import offline_model, onnx_text
from .decode import SplitPreprocess
from .fold import fold_batch_norms
from .spec import OFFLINE_MODEL, ModelSpec, may_load_unnamed, parse_model_spec, unnamed_model_message

log = logging.getLogger(__name__)

#: A standard CLIP with open weights; used whenever its weights are cached or can be fetched.
DEFAULT_MODEL = "ViT-B-32:laion2b_s34b_b79k"
#: Seconds to wait for the model hub before declaring it unreachable.
HUB_PROBE_TIMEOUT = 1.5

_OPEN_CLIP_LOCK = threading.Lock()


def pick_device(requested: str | None = None) -> str:
    """``cuda`` when available, then ``mps``, else ``cpu``; ``requested`` wins when given."""
    import torch

    if requested:
        return requested
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


#: Text prompts whose vectors an embedder keeps (a few hundred KB).
TEXT_CACHE = 256


def _padding_to_trim(model: Any) -> int | None:
    """The pad token id of a Hugging Face text tower, whose output does not depend on trailing padding (attention
    and pooling are masked by ``tokens != pad``, positions count from the start); None for open_clip's own text
    transformer, which adds a positional embedding of the full context length."""
    text = getattr(model, "text", None)
    config = getattr(text, "config", None)
    pad = getattr(config, "pad_token_id", None)
    return int(pad) if pad is not None and hasattr(text, "transformer") else None


def _trim_padding(tokens: Any, pad: int | None) -> Any:
    """``tokens`` without the columns that are padding in every row (all of them kept when ``pad`` is None)."""
    if pad is None or tokens.shape[1] == 0:
        return tokens
    used = (tokens != pad).any(dim=0).nonzero()
    return tokens[:, : int(used.max()) + 1] if len(used) else tokens[:, :1]


def _fast_text_wanted() -> bool:
    """False when ``PICSIFT_TEXT_RUNTIME=torch`` asks for torch's text tower even where onnxruntime is installed."""
    choice = os.environ.get("PICSIFT_TEXT_RUNTIME", "auto").strip().lower()
    if choice not in ("auto", "torch"):
        raise ValueError(f"PICSIFT_TEXT_RUNTIME={choice!r} is not one of: auto (onnxruntime when installed), torch")
    return choice != "torch"


#: Up to this many tokens in all, a text forward pass on the CPU runs on one thread (see :func:`_few_threads`).
ONE_THREAD_TOKENS = 256


@contextlib.contextmanager
def _few_threads(device: str, tokens: int) -> Iterator[None]:
    """One intra-op thread for a small CPU forward pass (a prompt or two), the setting restored afterwards.

    A prompt's few tokens are too little work to share: each of the ~60 operations of a MiniLM pass then waits for
    the pool's other thread, which on a busy machine is not running (bench/text_tower.py: 2 threads took 16x one
    thread's time under load). The vectors agree to float rounding (cosine > 0.99999, bench/text_tower.py)."""
    import torch

    if device != "cpu" or tokens > ONE_THREAD_TOKENS or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Embedder:
    """Embed images and text prompts with an open_clip model.

    Parameters
    ----------
    model
        A model spec (see :mod:`picsift.embedding.spec`), e.g. ``"ViT-B-32:laion2b_s34b_b79k"``.
    device
        ``"cuda"``, ``"mps"`` or ``"cpu"``; picked automatically when omitted.
    batch_size
        Images per forward pass; defaults to 256 on a GPU and 32 on a CPU.

    Outputs are float32 arrays of shape ``(n, dim)`` with unit L2 norm. On a GPU the model runs in
    half precision.
    """

    def __init__(self, model: str | ModelSpec, device: str | None = None, batch_size: int | None = None):
        self.spec = model if isinstance(model, ModelSpec) else parse_model_spec(model)
        self.device = pick_device(device)
        self.batch_size = batch_size or (256 if self.device == "cuda" else 32)
        self.identity = self.spec.identity()
        self._model, self.preprocess, self._tokenizer = _load(self.spec, self.device)
        self._text_cache: dict[str, np.ndarray] = {}
        self._text_lock = threading.Lock()
        self._pad_token_id = _padding_to_trim(self._model)
        # the onnxruntime twin of a Hugging Face text tower on the CPU, loaded with the first prompt (image-only
        # users never pay for it); None until then, and where there is none
        self._fast_text: onnx_text.OnnxTextTower | None = None
        self._fast_text_tried = self.device != "cpu" or self._pad_token_id is None or not _fast_text_wanted()
        self.image_size = _image_size(self.preprocess)
        if self.device == "cpu" and _convolutional(self._model):
            fold_batch_norms(self._model.visual, self.image_size)
        self.channels_last = _use_channels_last(self._model, self.device)
        self._split = SplitPreprocess(self.preprocess, self.channels_last)
        self.dim = int(self._encode_text_torch(self._tokenizer(["a"])).shape[1])
        if self.spec.is_random:
            log.warning("model %s", self.spec.label())

    def __repr__(self) -> str:
        return f"Embedder({self.spec.label()!r}, device={self.device!r}, dim={self.dim})"

    @property
    def label(self) -> str:
        return self.spec.label()

    def embed_text(self, prompts: Sequence[str]) -> np.ndarray:
        """Embed text prompts; returns ``(len(prompts), dim)`` float32 unit vectors.

        The last :data:`TEXT_CACHE` prompts' vectors are kept (a prompt typed again costs nothing). A Hugging Face
        text tower (the offline model's MiniLM) runs on the prompts' tokens without the padding to the context
        length: its attention and mean pooling mask padding out, so the vectors are the same (cosine > 0.99999,
        bench/text_tower.py) for a fraction of the work. On a CPU such a tower runs on onnxruntime when it is
        installed (:mod:`picsift.embedding.onnx_text`: the same vectors, cosine >= 0.9999, about 3x less CPU).
        """
        prompts = list(prompts)
        with self._text_lock:  # searches from a notebook and a background thread share the cache
            missing = list(dict.fromkeys(p for p in prompts if p not in self._text_cache))
            if missing:
                tokens = _trim_padding(self._tokenizer(missing), self._pad_token_id)
                fast = self._fast_text_tower()
                features = _normalise_array(fast(tokens.numpy())) if fast else self._encode_text_torch(tokens)
                for prompt, vector in zip(missing, features, strict=True):
                    vector.flags.writeable = False
                    self._text_cache[prompt] = vector
            for prompt in prompts:  # most recently used last
                self._text_cache[prompt] = self._text_cache.pop(prompt)
            while len(self._text_cache) > TEXT_CACHE:
                self._text_cache.pop(next(iter(self._text_cache)))
            vectors = [self._text_cache[p] for p in prompts]
        return np.stack(vectors) if vectors else np.zeros((0, self.dim), np.float32)

    def _encode_text_torch(self, tokens: Any) -> np.ndarray:
        """Unit vectors of ``tokens`` from the torch text tower."""
        import torch

        with torch.inference_mode(), _few_threads(self.device, tokens.numel()):
            return _normalise(self._model.encode_text(tokens.to(self.device)))

    def _fast_text_tower(self) -> onnx_text.OnnxTextTower | None:
        """The onnxruntime text tower, loaded (or built into the model cache) on first use; None without one."""
        if not self._fast_text_tried:
            self._fast_text_tried = True
            probes = _trim_padding(self._tokenizer(list(onnx_text.PROBES)), self._pad_token_id)
            self._fast_text = onnx_text.load_text_tower(self._model.text, probes, self.identity,
                                                        offline_model.cache_dir())
        return self._fast_text

    def embed_batch(self, pixels: Any) -> np.ndarray:
        """Embed a batch tensor of preprocessed images ``(n, 3, H, W)``."""
        import torch

        pixels = pixels.to(self.device, non_blocking=True)
        if self.device == "cuda":
            pixels = pixels.half()
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            features = self._model.encode_image(pixels)
        return _normalise(features)

    def prepare(self, image: Image.Image) -> Any:
        """The per-image half of :attr:`preprocess` for a decoded RGB picture, for :meth:`embed_prepared`.

        Safe to call from several threads at once; see :class:`picsift.embedding.decode.SplitPreprocess`.
        """
        return self._split.prepare(image)

    @property
    def preparer(self) -> SplitPreprocess:
        """The per-image half of :attr:`preprocess` as a small picklable object (its ``prepare`` is
        :meth:`prepare`), for workers that decode without the model (a Ray decode stage)."""
        return self._split

    def embed_prepared(self, items: Sequence[Any]) -> np.ndarray:
        """Embed one batch of :meth:`prepare`'s results; the same vectors as ``preprocess`` + :meth:`embed_batch`."""
        if not items:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_batch(self._split.collate(items))

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed RGB PIL images (decoded already; see :func:`picsift.embedding.decode.decode_image`)."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        chunks = []
        for start in range(0, len(images), self.batch_size):
            chunks.append(self.embed_prepared([self.prepare(img) for img in images[start : start + self.batch_size]]))
        return np.concatenate(chunks)


def _convolutional(model: Any) -> bool:
    """Whether the image tower is a CNN: a timm one (the offline model's EfficientNet) or CLIP's ResNets."""
    return type(model.visual).__name__ in ("TimmModel", "ModifiedResNet")


def _use_channels_last(model: Any, device: str) -> bool:
    """Convolutional image towers (timm CNNs such as the offline model's EfficientNet, CLIP's ResNets) run
    about 1.4x faster on a CPU with channels-last tensors (bench/ingest.py); vision transformers gain
    nothing, so they are left as they are."""
    import torch

    if device != "cpu" or not _convolutional(model):
        return False
    model.visual.to(memory_format=torch.channels_last)
    return True


def _normalise(features: Any) -> np.ndarray:
    return _normalise_array(features.float().cpu().numpy())


def _normalise_array(array: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return (array / np.maximum(norms, 1e-12)).astype(np.float32)


def _image_size(preprocess: Callable[..., Any]) -> int:
    for transform in getattr(preprocess, "transforms", []):
        size = getattr(transform, "size", None)
        if isinstance(size, int):
            return size
        if isinstance(size, (tuple, list)) and size:
            return int(max(size))
    return 224


def _load(spec: ModelSpec, device: str) -> tuple[Any, Any, Any]:
    import open_clip
    import torch

    with _OPEN_CLIP_LOCK:  # add_model_config and model creation touch open_clip's global registry
        if spec.config_json is not None:
            open_clip.add_model_config(spec.config_json)
        if spec.arch == offline_model.ARCH_NAME:  # its image tower is a timm architecture of picsift's own
            offline_model.register_architecture()
        precision = "fp16" if device == "cuda" else "fp32"
        if spec.kind == "hf-hub":
            name, pretrained = spec.text, None
        else:
            name = spec.arch
            if name not in open_clip.list_models():
                raise ValueError(
                    f"unknown open_clip architecture {name!r}; valid ones include "
                    f"{', '.join(open_clip.list_models()[:12])}, ... (see open_clip.list_models())"
                )
            pretrained = {
                "pretrained": spec.tag,
                "checkpoint": str(spec.checkpoint),
                "random": None,
            }[spec.kind]
        if spec.kind == "pretrained":
            _check_pretrained_reachable(spec)
        rng = torch.random.fork_rng() if spec.is_random else contextlib.nullcontext()
        try:
            with rng:
                if spec.is_random:
                    torch.manual_seed(0)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    name, pretrained=pretrained, device=device, precision=precision
                )
        except pickle.UnpicklingError as e:  # torch.load(weights_only=True) met more than tensors: never run it
            lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
            detail = next((line for line in lines if line.startswith("WeightsUnpickler error")), lines[-1])
            raise ValueError(
                f"cannot load model {spec.text!r}: its checkpoint {spec.checkpoint} holds more than tensors, and "
                f"picsift loads weights only (a checkpoint can run code otherwise): {detail}"
            ) from e
        except RuntimeError as e:
            raise ValueError(f"cannot load model {spec.text!r}: {e}") from e
        tokenizer = open_clip.get_tokenizer(name)
    model.eval()
    return model, preprocess, tokenizer


def refuse_unnamed_model(text: str, spec: ModelSpec | None = None) -> None:
    """:class:`~picsift.errors.UnnamedModelError` unless the model spec ``text``, read from a workspace, may be
    loaded without the user naming it (:func:`~picsift.embedding.spec.may_load_unnamed`); with its parsed
    ``spec`` (about to load), also unless it is picsift's own or in ``open_clip.list_pretrained()``."""
    if not may_load_unnamed(text):
        raise UnnamedModelError(unnamed_model_message(text))
    if spec is not None and spec.text != OFFLINE_MODEL and not _ships_with_open_clip(spec):
        raise UnnamedModelError(unnamed_model_message(text, ", which open_clip does not ship"))


def _ships_with_open_clip(spec: ModelSpec) -> bool:
    import open_clip

    if spec.kind != "pretrained" or spec.config_json is not None or spec.tag is None:
        return False
    return (spec.arch, spec.tag.lower().replace("-", "_")) in set(open_clip.list_pretrained())  # open_clip's tag form


def pretrained_weights_available(spec: ModelSpec) -> tuple[bool, str]:
    """Whether a pretrained tag's weights are cached or fetchable; with the reason when not."""
    import open_clip

    if spec.kind != "pretrained":
        return True, ""
    cfg = open_clip.get_pretrained_cfg(spec.arch, spec.tag or "")
    if not cfg:
        tags = [t for a, t in open_clip.list_pretrained() if a == spec.arch]
        return False, (
            f"{spec.arch} has no pretrained tag {spec.tag!r}; valid tags: {', '.join(tags) or '(none)'}"
        )
    if _weights_cached(cfg):
        return True, ""
    if _hub_reachable():
        return True, ""
    return False, f"weights for {spec.text} are not cached and the model hub cannot be reached (offline?)"


def _check_pretrained_reachable(spec: ModelSpec) -> None:
    ok, reason = pretrained_weights_available(spec)
    if not ok:
        raise ModelUnavailableError(
            f"{reason}; choose another model with --model SPEC (Python: model=...), "
            "e.g. ARCH:/path/to/checkpoint.pt"
        )


def _weights_cached(cfg: dict[str, Any]) -> bool:
    if cfg.get("file"):
        return os.path.isfile(cfg["file"])
    hub = cfg.get("hf_hub", "")
    if not hub:
        return False
    from huggingface_hub import try_to_load_from_cache

    # open_clip's convention: "org/repo/" means the default file names, "org/repo/file" one file.
    repo_id, filename = os.path.split(hub)
    candidates = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    return any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in candidates)


def _hub_reachable() -> bool:
    """Whether the model hub answers within :data:`HUB_PROBE_TIMEOUT` seconds, DNS included."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT):
                answer.append(True)
        except OSError:
            answer.append(False)

    # A thread, because a hanging DNS lookup ignores the socket's timeout.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(HUB_PROBE_TIMEOUT)
    return bool(answer and answer[0])
