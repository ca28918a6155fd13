"""Where a library's images live: the file-system seam (fsspec) under every scan and read.

A library's root is a local folder (a :class:`pathlib.Path`) or a URL that fsspec understands
(``s3://bucket/prefix``, ``gs://bucket/prefix``, an ``https://`` page listing its images, any fsspec URL). A URL root
is a universal_pathlib ``UPath`` carrying the storage options, so every module above this one uses it like a folder
(``root / relative``, ``.name``; ``str()`` is the object's URL) and never asks where a file is. Credentials stay in
that object, in memory: they are never written to the workspace or printed.

Local folders keep picsift's hardened scan and reader (:mod:`picsift.reading`: regular files only, no pipes, bounded
reads), which fsspec's local file system does not give; every other file system is listed and read here:

- :func:`list_objects` lists objects with a stamp of their version (ETag, else VersionId or generation, else the
  modification time) in :class:`~picsift.core.catalog.FileState`'s ``mtime_ns``, so the update reads only new or
  changed objects, as it does with a folder's modification times;
- :func:`read_object` reads one object, retrying failures a bounded number of times with exponential backoff;
  :func:`read_object_version` also says which version it read (a Ray worker's read, checked against the listing);
- a listing that cannot be made (a vanished bucket, credentials refused) raises :class:`StorageUnavailableError`,
  so an update stops with one error instead of taking every image for deleted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..embedding.decode import IMAGE_EXTENSIONS
from ..errors import PicsiftError
from ..reading import MAX_FILE_BYTES, UnreadableFileError, read_file_bytes
from .catalog import FileState, ScanResult
from .catalog.scanning import VIDEO_EXTENSIONS

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Attempts per listing or read before an object is skipped (the waits between them double from BACKOFF_SECONDS).
ATTEMPTS = 4
BACKOFF_SECONDS = 0.25
#: Objects read at once from a remote file system (each waits on the network, not on the CPU).
REMOTE_READERS = 16
CLOUD_EXTRA = 'pip install "picsift[cloud]"'
#: ``hfdataset:///abs/path``: a Hugging Face dataset saved with ``save_to_disk``, indexed in place.
DATASET_PROTOCOL = "hfdataset"


class StorageUnavailableError(PicsiftError):
    """The images' location cannot be listed (gone, or access refused): nothing is changed, nothing deleted."""


def is_url(location: object) -> bool:
    """Whether ``location`` names a file system by URL (``s3://``, ``gs://``, ``https://``...) rather than a folder."""
    return isinstance(location, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", location) is not None \
        and not location.startswith("file://")


def is_remote(root: object) -> bool:
    """Whether a library root is a file system path object (a URL's ``UPath``) rather than a local folder."""
    return not isinstance(root, (str, os.PathLike))


def public_url(url: str) -> str:
    """``url`` without user, password, query or fragment: what may be shown or used in a name."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", "")) if parts.port is None \
        else urlunsplit((parts.scheme, f"{parts.hostname}:{parts.port}", parts.path, "", ""))


def remote_root(url: str, storage_options: dict[str, Any] | None = None) -> Any:
    """The ``UPath`` of ``url``, carrying ``storage_options`` (credentials, endpoint...) in memory only."""
    if urlsplit(url).username or urlsplit(url).password:
        raise PicsiftError(f"{public_url(url)}: put credentials in storage_options (CLI: --storage-option KEY=VALUE) "
                           "or where the file system reads them (environment, ~/.aws), never in the URL: results "
                           "and status show the URL")
    try:
        from upath import UPath
    except ImportError as e:
        raise PicsiftError(f"reading images from {public_url(url)} needs fsspec and universal_pathlib: "
                           f"{CLOUD_EXTRA}") from e
    import fsspec

    # a save_to_disk folder seen as files (picsift.core.dataset_files), imported by fsspec when first used
    fsspec.register_implementation(DATASET_PROTOCOL, "picsift.core.dataset_files.SavedDatasetFileSystem",
                                   clobber=True)
    text = url.rstrip("/") if urlsplit(url).scheme not in ("http", "https") else url
    try:
        with warnings.catch_warnings():  # universal_pathlib's generic path serves fsspec's other file systems
            warnings.filterwarnings("ignore", "UPath .* not explicitly implemented")
            root = UPath(text, **(storage_options or {}))
        root.fs  # noqa: B018 (makes the file system now: a missing backend or a bad option fails here)
    except (ImportError, ValueError, TypeError) as e:
        raise PicsiftError(f"cannot open {public_url(url)}: {e} ({CLOUD_EXTRA} installs s3fs; gcsfs and other "
                           "protocols need their fsspec backend)") from e
    return root


def default_workspace(url: str) -> Path:
    """A workspace for ``url`` in the user's cache folder, named after it (credentials never enter the name)."""
    import platformdirs

    public = public_url(url).rstrip("/")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", public).strip("-.")[:60]
    digest = hashlib.blake2b(public.encode(), digest_size=4).hexdigest()
    return Path(platformdirs.user_cache_dir("picsift")) / "remote" / f"{slug}-{digest}"


# -- listing ---------------------------------------------------------------------------------------
def list_objects(root: Any, *, progress: bool = False) -> ScanResult:
    """Image objects under a URL root, by path relative to it, each with its size and version stamp.

    Hidden names (a part starting with ``.``) are left out as in a folder; keys that are no plain relative path
    (empty parts) and videos (not read from URLs yet) are reported as problems. Raises
    :class:`StorageUnavailableError` when the location cannot be listed. With ``progress``, a bar counts the objects
    as the listing's pages come (the total is not known before the end).
    """
    from tqdm.auto import tqdm

    fs, base = root.fs, root.path.rstrip("/")
    where = str(root)
    fs.invalidate_cache(base)  # a listing cached by an earlier update (or this process) would hide changes
    with tqdm(desc=f"Listing {where}", unit=" objects", disable=not progress) as bar:
        entries = with_retries(lambda: _find(fs, base, bar), f"list {where}", fatal=True)
    if not entries and not with_retries(lambda: fs.exists(base), f"look at {where}", fatal=True):
        # an empty prefix (a typo, a bucket emptied under it) would read as every image deleted
        raise StorageUnavailableError(f"cannot list {where}: no object is there (it does not exist); nothing was "
                                      "changed")
    result = ScanResult()
    unsized: list[tuple[str, str]] = []
    for name, info in sorted(entries.items()):
        relative = _relative(str(name), base)
        if relative is None or any(part.startswith(".") for part in relative.split("/")):
            continue
        extension = os.path.splitext(relative)[1].lower()
        if extension in VIDEO_EXTENSIONS:
            result.problems.append((relative, "videos are not read from URLs yet; copy it to a local folder"))
        elif extension not in IMAGE_EXTENSIONS:
            continue
        elif "" in relative.split("/") or "\\" in relative:
            result.problems.append((relative, "object name is not a plain relative path; it is not read"))
        elif info.get("size") is None or _stamp(info) is None:
            unsized.append((relative, str(name)))  # a web page's links: ask each object (HEAD) below
        else:
            result.files[relative] = FileState(int(info["size"]), _stamp(info) or 0)
    if unsized:
        with ThreadPoolExecutor(REMOTE_READERS, thread_name_prefix="picsift-list") as pool:
            for relative, details in pool.map(lambda item: (item[0], _info(fs, item[1])), unsized):
                if details is None:
                    result.problems.append((relative, "cannot read object (its details could not be fetched)"))
                else:
                    result.files[relative] = FileState(int(details.get("size") or 0), _stamp(details) or 0)
    return result


def _find(fs: Any, base: str, bar: Any) -> dict[str, dict[str, Any]]:
    """``fs.find(base, detail=True, withdirs=False)``, counting on ``bar`` as it goes where the file system allows.

    s3fs lists a prefix in pages of 1,000 keys, one after the other; its page iterator (the one its ``find`` uses)
    lets each page be counted as it comes. Other file systems answer in one go.
    """
    if bar.n:  # a listing tried again counts from zero
        bar.reset()
    if type(fs).__module__.split(".")[0] != "s3fs":
        entries: dict[str, dict[str, Any]] = fs.find(base, detail=True, withdirs=False)
        bar.update(len(entries))
        return entries
    from fsspec.asyn import sync

    bucket, key, _ = fs.split_path(base)
    found: dict[str, dict[str, Any]] = {}

    async def collect() -> None:
        async for info in fs._iterdir(bucket, delimiter="", prefix=f"{key}/" if key else ""):
            if info.get("type") == "file":
                found[info["name"]] = info
                bar.update(1)

    sync(fs.loop, collect)
    return found


def _relative(name: str, base: str) -> str | None:
    """``name`` relative to ``base`` ('/'-separated), None when it is not under it (a web page's other links)."""
    if base and not name.startswith(base + "/"):
        return None
    return name[len(base) + 1:] if base else name.lstrip("/")


def _info(fs: Any, name: str) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = with_retries(lambda: fs.info(name), f"read details of {name}")
    except (OSError, StorageUnavailableError) as e:
        log.warning("%s", e)
        return None
    return info


def _stamp(info: dict[str, Any]) -> int | None:
    """A 63-bit number that changes when the object does: from its ETag (or version, generation, checksum), else
    its modification time; None when the listing has neither."""
    for key in ("ETag", "etag", "VersionId", "generation", "md5Hash", "crc32c", "Content-MD5", "Digest"):
        if info.get(key):
            return _hash63(f"{key}:{info[key]}")
    for key in ("LastModified", "last_modified", "mtime", "updated", "Last-Modified", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return int(value.timestamp() * 1e9)
        if isinstance(value, (int, float)):
            return int(value * 1e9)
        if value:
            return _hash63(f"{key}:{value}")
    return None


def _hash63(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


# -- reading ---------------------------------------------------------------------------------------
def read_object(root: Any, relative: str, listed: FileState | None = None) -> bytes:
    """The bytes of the object ``root / relative``, retried with backoff (see :func:`with_retries`).

    Raises ``FileNotFoundError`` when it is gone, :class:`~picsift.reading.UnreadableFileError` when it is larger
    than the read limit, ``OSError`` (its message names the attempts) when every attempt failed.
    """
    if listed is not None and listed.size > MAX_FILE_BYTES:
        raise UnreadableFileError("file is larger than the read limit per file (picsift.reading.MAX_FILE_BYTES)")
    target = root / relative
    return with_retries(lambda: read_file_bytes(target), f"read {target}")


def read_object_version(root: Any, relative: str) -> tuple[bytes, FileState]:
    """The bytes of the object ``root / relative`` and the state of the version they are: their size and the stamp
    :func:`list_objects` gives that version (so a reader elsewhere can tell whether it read what was listed).

    The details and the bytes come from one opened file; on S3, s3fs asks for the bytes only while the object still
    has the ETag of those details (``If-Match``), so a change in between fails the attempt and the next one reads
    the new version with its own stamp: two requests per object (details, then the bytes). A file system whose open
    file carries no version (HTTP) is asked for the object's details after the read: a change before or during the
    read then shows as another version (three requests). Retried and raising as :func:`read_object`.
    """
    target = root / relative
    fs, path = target.fs, target.path

    def read() -> tuple[bytes, FileState]:
        too_large = UnreadableFileError("file is larger than the read limit per file (picsift.reading.MAX_FILE_BYTES)")
        with fs.open(path, "rb") as f:
            details = getattr(f, "details", None) or {}
            if int(details.get("size") or 0) > MAX_FILE_BYTES:
                raise too_large
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise too_large
        stamp = _stamp(details)
        if stamp is None:
            stamp = _stamp(fs.info(path))
        return bytes(data), FileState(len(data), stamp or 0)

    return with_retries(read, f"read {target}")


def with_retries(action: Callable[[], T], what: str, *, fatal: bool = False, attempts: int = ATTEMPTS) -> T:
    """``action()``, tried up to ``attempts`` times with exponential backoff.

    A missing object (``FileNotFoundError``) and a refused access are not retried: they are answers. With
    ``fatal`` (a listing), those and the last failure raise :class:`StorageUnavailableError`; otherwise the missing
    object's ``FileNotFoundError`` comes through and the rest become ``OSError`` naming the attempts.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except FileNotFoundError as e:
            if fatal:
                raise StorageUnavailableError(f"cannot {what}: it does not exist ({_reason(e)}); nothing was "
                                              "changed") from e
            raise
        except (UnreadableFileError, PicsiftError):  # answers too: trying again would give the same
            raise
        except Exception as e:  # the file systems raise their own kinds (aiohttp, botocore...)
            refused = _refused(e)
            if refused or attempt == attempts:
                reason = "access was refused (check the credentials)" if refused else \
                    f"{_reason(e)}, after {attempts} attempts"
                if fatal:
                    raise StorageUnavailableError(f"cannot {what}: {reason}; nothing was changed") from e
                raise OSError(f"cannot {what}: {reason}") from e
            wait = BACKOFF_SECONDS * 2 ** (attempt - 1)
            log.debug("%s failed (%s); trying again in %.2f s", what, _reason(e), wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _refused(error: BaseException | None) -> bool:
    """Whether access was refused (s3fs and gcsfs raise PermissionError; HTTP answers 401 or 403)."""
    while error is not None:
        if isinstance(error, PermissionError) or getattr(error, "status", None) in (401, 403):
            return True
        error = error.__cause__
    return False


def _reason(error: BaseException) -> str:
    if type(error) is OSError and str(error):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
