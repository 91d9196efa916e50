"""Listing and fetching single files of Hugging Face Hub repos (for models and for wav2vec2 weights).

The listing comes from the Hub when online and from the local cache snapshot when offline
(``HF_HUB_OFFLINE=1`` or ``local_files_only``), so choosing a file never needs a download; files are
then fetched one by one with ``hf_hub_download`` (its cache, its progress bars).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointNotFoundError

__all__ = ["RepoFiles", "fetch_file", "format_size", "hub_offline", "is_repo_id", "list_repo"]

logger = logging.getLogger("unils")

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: Downloads above this size get a log line with their size before they start.
LARGE_DOWNLOAD = 100 * 1024**2


def is_repo_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hub repo id (``org/name``)."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not name.endswith("/")


def hub_offline(local_files_only: bool = False) -> bool:
    """Whether the network must not be used: ``local_files_only`` or ``HF_HUB_OFFLINE`` (read now,
    so setting the variable after import works too)."""
    if local_files_only:
        return True
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE")
    if env is not None:
        return env.strip().upper() in ("1", "ON", "YES", "TRUE")
    return bool(constants.HF_HUB_OFFLINE)


def _network_errors() -> tuple[type[BaseException], ...]:
    try:  # huggingface_hub >= 1.0 talks HTTP through httpx
        import httpx

        return (httpx.HTTPError,)
    except ImportError:
        return ()


def format_size(n: int | None) -> str:
    """Bytes as a short readable size (``1.27 GB``); ``?`` when unknown."""
    if n is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


@dataclass
class RepoFiles:
    """The files of one revision of a Hub repo.

    Attributes:
        repo_id: ``org/name``.
        revision: what was asked for (branch, tag, commit or None for main).
        commit: the commit the listing describes (None when the Hub did not say).
        sizes: repo-relative path -> size in bytes (None when unknown).
        sha256: repo-relative path -> sha256 of large (LFS) files, when known without downloading.
        cache_dir: the Hub cache used.
    """

    repo_id: str
    revision: str | None
    commit: str | None
    sizes: dict[str, int | None] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    cache_dir: str | None = None

    def local_path(self, path: str) -> Path | None:
        """The cached copy of ``path`` at this revision, or None when it is not downloaded."""
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(
            self.repo_id, path, cache_dir=self.cache_dir, revision=self.commit or self.revision
        )
        return Path(found) if isinstance(found, str) else None

    @property
    def pinned(self) -> str:
        """``repo@commit`` (or ``repo@revision`` when the commit is unknown)."""
        return f"{self.repo_id}@{self.commit or self.revision or 'main'}"


def _cache_listing(repo_id: str, revision: str | None, cache_dir: str | None) -> RepoFiles | None:
    from huggingface_hub import constants

    root = Path(cache_dir or constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    rev = revision or "main"
    commit = rev if _COMMIT.match(rev) and (root / "snapshots" / rev).is_dir() else None
    if commit is None and (root / "refs" / rev).is_file():
        commit = (root / "refs" / rev).read_text().strip()
    if commit is None or not (root / "snapshots" / commit).is_dir():
        return None
    snap = root / "snapshots" / commit
    listing = RepoFiles(repo_id, revision, commit, cache_dir=cache_dir)
    for f in sorted(snap.rglob("*")):
        if f.is_file():
            rel = f.relative_to(snap).as_posix()
            listing.sizes[rel] = f.stat().st_size
            blob = f.resolve().name  # cache blobs of LFS files are named by their sha256
            if _SHA256.match(blob):
                listing.sha256[rel] = blob
    return listing


def list_repo(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> RepoFiles:
    """Every file of a Hub repo revision with its size, without downloading any.

    Offline, the listing is the local cache snapshot of that revision (the files downloaded before).

    Raises:
        CheckpointNotFoundError: the repo or revision does not exist, or is not cached when offline.
    """
    cache = str(cache_dir) if cache_dir is not None else None
    if hub_offline(local_files_only):
        listing = _cache_listing(repo_id, revision, cache)
        if listing is None:
            raise CheckpointNotFoundError(
                f"{repo_id} (revision {revision or 'main'}) is not in the local Hub cache"
                f"{' ' + cache if cache else ''} and downloading is disabled (offline mode or "
                "local_files_only=True); download it once with network access"
            )
        return listing
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi().model_info(repo_id, revision=revision, token=token, files_metadata=True)
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise CheckpointNotFoundError(
            f"no Hub repo {repo_id} (revision {revision or 'main'}): {exc}"
        ) from exc
    except Exception as exc:  # network failures come as httpx/OS/Hub errors: fall back to the cache
        listing = _cache_listing(repo_id, revision, cache)
        if listing is None:
            raise CheckpointNotFoundError(
                f"could not list {repo_id} on the Hub ({exc}) and it is not cached"
            ) from exc
        logger.warning("could not reach the Hub (%s): using the cached snapshot %s", exc, listing.pinned)
        return listing
    listing = RepoFiles(repo_id, revision, info.sha, cache_dir=cache)
    for s in info.siblings or []:
        listing.sizes[s.rfilename] = s.size
        if s.lfs is not None:
            listing.sha256[s.rfilename] = s.lfs.sha256
    return listing


def fetch_file(
    listing: RepoFiles, path: str, *, local_files_only: bool = False, token: str | bool | None = None
) -> Path:
    """Download one file of ``listing`` (or take it from the cache) and return its local path.

    Logs the size before a large download when it is not cached yet.

    Raises:
        CheckpointNotFoundError: the file cannot be fetched (offline and not cached, network error).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
    from huggingface_hub.utils import are_progress_bars_disabled

    errors: tuple[type[BaseException], ...] = (
        *_network_errors(),
        HfHubHTTPError,
        EntryNotFoundError,
        LocalEntryNotFoundError,
        OSError,
        ValueError,
    )
    size = listing.sizes.get(path)
    if listing.local_path(path) is None:
        large = size is not None and size >= LARGE_DOWNLOAD and not are_progress_bars_disabled()
        logger.log(
            logging.WARNING if large else logging.INFO,
            "downloading %s from %s (%s)",
            path,
            listing.pinned,
            format_size(size),
        )
    try:
        return Path(
            hf_hub_download(
                listing.repo_id,
                path,
                revision=listing.commit or listing.revision,
                cache_dir=listing.cache_dir,
                local_files_only=hub_offline(local_files_only),
                token=token,
            )
        )
    except errors as exc:
        raise CheckpointNotFoundError(f"could not fetch {path} from {listing.pinned}: {exc}") from exc
