"""The storage handles that every service shares, and the bridge from async code to the DB."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError

from cargohold.config import Settings
from cargohold.services.group_commit import GroupCommit
from cargohold.storage.blobstore import BlobStore
from cargohold.storage.database import Database, WouldBlock
from cargohold.storage.events import EventStore
from cargohold.storage.filesystem import FilesystemBlobStore
from cargohold.storage.identity import IdentityStore
from cargohold.storage.images import ImageStore
from cargohold.storage.metadata import MetadataStore
from cargohold.storage.repositories import RepositoryStore
from cargohold.storage.secrets import ServerKeys

log = logging.getLogger(__name__)
CONFLICT_RETRIES = 3
# PostgreSQL's deadlock_detected and serialization_failure: the database rolled the whole
# transaction back so that another could go on; running it again is the documented answer.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def lost_race(exc: DBAPIError) -> bool:
    """Whether a failed transaction lost a race (a constraint, a deadlock, a serialization
    failure) and was rolled back whole: then it may simply run again."""
    return (isinstance(exc, IntegrityError)
            or getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES)
P = ParamSpec("P")
T = TypeVar("T")


class Storage:
    """The stores of one node (database, blobs, server key), plus a thread pool for DB calls."""

    def __init__(self, settings: Settings, database: Database, blobs: BlobStore,
                 keys: ServerKeys) -> None:
        self.settings = settings
        self.database = database
        self.metadata = MetadataStore(database)
        self.identity = IdentityStore(database)
        self.repositories = RepositoryStore(database, self.metadata.outbox)
        self.images = ImageStore(database)
        self.events = EventStore(database)
        self.outbox = self.metadata.outbox
        self.blobs = blobs
        self.keys = keys
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="db")
        self._inline_reads = database.sqlite
        self._group_commit = GroupCommit(database, self._executor) if database.sqlite else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        return cls(settings, Database(settings.resolved_database_url), open_blob_store(settings),
                   ServerKeys.load(settings.data_dir, settings.secret_key))

    async def db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a store call off the event loop (writes, and anything that may wait).

        A transaction that lost a race (PostgreSQL runs writers concurrently: a repository
        deleted while a push links a blob into it, or a deadlock the server broke) was rolled
        back whole, so it is run again, up to three times, against the state the winner left.
        """
        loop = asyncio.get_running_loop()
        # The call sees the request's context (its id and caller, for audit and event rows).
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        for attempt in range(CONFLICT_RETRIES):
            try:
                return await loop.run_in_executor(self._executor, call)
            except DBAPIError as exc:
                if attempt == CONFLICT_RETRIES - 1 or not lost_race(exc):
                    raise
                log.info("retrying %s after a conflicting concurrent write",
                         getattr(fn, "__name__", fn))
        raise AssertionError("unreachable")

    async def write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a store call that makes one short write transaction (and nothing else): on
        SQLite it joins the concurrent ones in a group commit (group_commit.py), else it
        runs as `db` does."""
        if self._group_commit is None:
            return await self.db(fn, *args, **kwargs)
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        try:
            return await self._group_commit.submit(call)
        except (WouldBlock, IntegrityError):
            # It needs more than the fast path, or lost a race and was rolled back: `db`
            # runs it alone (again, against the winner's state).
            return await self.db(fn, *args, **kwargs)

    async def read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a short, indexed read. On SQLite it runs right here: a WAL reader never waits
        for a writer, and a microseconds-long query costs less than a hop to a thread (whose
        return trip contends for the GIL under load). Elsewhere it goes to the thread pool."""
        if self._inline_reads:
            return self.database.inline_read(functools.partial(fn, *args, **kwargs))
        return await self.db(fn, *args, **kwargs)

    async def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {}
        for name, probe in (("database", self._check_db), ("blob_store", self.blobs.check)):
            try:
                await probe()
                report[name] = {"status": "ok"}
            except Exception as exc:
                report[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        return report

    async def _check_db(self) -> None:
        await self.db(self.database.check)

    def close(self) -> None:
        self._executor.shutdown(wait=False)
        close_blobs = getattr(self.blobs, "close", None)
        if close_blobs is not None:
            close_blobs()
        self.database.dispose()


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store named by the settings."""
    if settings.blob_store.backend == "filesystem":
        return FilesystemBlobStore(settings.resolved_blob_path,
                                   direct_writes=settings.blob_store.direct_writes)
    if settings.blob_store.backend == "s3":
        from cargohold.storage.s3 import S3BlobStore  # botocore's S3 model loads only when used

        return S3BlobStore(settings.blob_store)
    raise ValueError(f"unknown blob store backend {settings.blob_store.backend!r}")
