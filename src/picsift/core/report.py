"""What an update did: :class:`UpdateReport` (``picsift.UpdateReport``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class UpdateReport:
    """What one :meth:`picsift.Library.update` did."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0
    reused: int = 0  # files whose content already had an embedding (moved or duplicated files)
    frames: int = 0  # frames sampled from new or changed videos (each an image; see picsift.core.video)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) found in this run
    objects: int = 0  # labelled objects whose crop was embedded (see picsift.core.objects)
    objects_skipped: list[tuple[str, str]] = field(default_factory=list)  # ("<path> object <id>", reason)
    regions: int = 0  # image regions embedded (see picsift.core.regions)
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [
            f"{self.embedded} embedded",
            f"{self.added} new",
            f"{self.changed} changed",
            f"{self.removed} removed",
            f"{self.unchanged} unchanged",
        ]
        if self.reused:
            parts.append(f"{self.reused} reused")
        if self.frames:
            parts.append(f"{self.frames} video frames")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        if self.objects:
            parts.append(f"{self.objects} objects embedded")
        if self.objects_skipped:
            parts.append(f"{len(self.objects_skipped)} objects skipped")
        if self.regions:
            parts.append(f"{self.regions} regions embedded")
        return ", ".join(parts) + f" in {self.seconds:.1f}s"
