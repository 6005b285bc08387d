"""Process management for `cargohold serve`: prepare storage, bind, run N worker processes.

The parent migrates the database and binds the socket once; each worker inherits the socket
and serves it with its own event loop and database connections. Workers share state only
through the database and the blob store.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import socket
from types import FrameType

from cargohold.config import Settings
from cargohold.heap import keep_freed_memory
from cargohold.http.app import create_app, identity_service
from cargohold.http.balanced_accept import ConnectionCounts, WorkerSlot
from cargohold.http.logging import AccessLogger
from cargohold.http.logging import configure_logging as configure_log_format
from cargohold.http.serving import run_app
from cargohold.services.bootstrap import bootstrap_administrator
from cargohold.services.metrics import enable_multiprocess
from cargohold.services.storage import Storage

log = logging.getLogger("cargohold")


def configure_logging(level: str, log_format: str = "text") -> None:
    configure_log_format(level, log_format)


def prepare(settings: Settings) -> None:
    """Create the data directory, migrate the schema, and create the first administrator."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _create_private_sqlite_file(settings.resolved_database_url)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    storage = Storage.from_settings(settings)
    try:
        _migrate_in_child(storage)
        written = bootstrap_administrator(identity_service(storage), settings.data_dir)
        if written is not None:
            log.info("administrator access key written to %s (AWS shared-credentials format)",
                     written)
    finally:
        storage.close()
    if settings.anonymous:
        log.warning("!!! --anonymous: ANYONE can push, pull and delete in this registry without "
                    "credentials. For local experiments only. !!!")


def _migrate_in_child(storage: Storage) -> None:
    """Migrate the schema in a short-lived child process: alembic and its templates (~10 MiB
    of modules) never enter this process, nor the workers it forks, whose resident memory
    counts every page they inherit."""
    def migrate() -> None:
        try:
            storage.database.migrate()
        finally:
            storage.database.dispose()

    child = multiprocessing.get_context("fork").Process(target=migrate, name="migrate")
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"cargohold: migrating the database failed (exit code {child.exitcode})")


def _create_private_sqlite_file(url: str) -> None:
    """The embedded database holds password hashes and sealed secrets: owner-only access."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix + ":memory:":
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(url[len(prefix):], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def run_worker(settings: Settings, sock: socket.socket,
               counts: ConnectionCounts | None = None, index: int = 0) -> None:
    """Serve on `sock`; with `counts`, as worker `index` of those sharing it."""
    configure_logging(settings.log_level, settings.log_format)
    keep_freed_memory()
    app = create_app(settings)
    # What the worker has imported and built lives as long as it does: out of the cyclic
    # collector's sight, a full collection walks only what requests leave behind. (Over the
    # ~140,000 objects of the modules and the ECR model, one took 130-150 ms under load, a
    # stall of every request in flight: bench/PROFILE.md.)
    gc.collect()
    gc.freeze()
    # The access logger also counts every request in the metrics (access_log only decides
    # whether it writes a line).
    run_app(app, sock, access_log=logging.getLogger("cargohold.access"),
            access_log_class=AccessLogger, shutdown_timeout=10,
            slot=None if counts is None else WorkerSlot(counts, index))


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    prepare(settings)
    # Before any worker forks: every worker counts into files under this directory.
    enable_multiprocess(settings.data_dir.resolve() / "run" / "metrics")
    sock = bind(settings)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    log.info("Cargohold listening on http://%s:%d (workers=%d, metadata=%s, blobs=%s)",
             shown, port, settings.workers, _redact(settings.resolved_database_url),
             settings.resolved_blob_path if settings.blob_store.backend == "filesystem"
             else f"s3://{settings.blob_store.bucket}/{settings.blob_store.prefix}")
    if settings.workers == 1:
        run_worker(settings, sock)
        return
    _supervise(settings, sock)


def _supervise(settings: Settings, sock: socket.socket) -> None:
    context = multiprocessing.get_context("fork")
    counts = ConnectionCounts(settings.workers)  # before the fork: shared by every worker
    workers = [context.Process(target=run_worker, args=(settings, sock, counts, index),
                               daemon=False)
               for index in range(settings.workers)]
    for worker in workers:
        worker.start()
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.is_alive() and worker.pid:
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while any(worker.is_alive() for worker in workers):
            for index, worker in enumerate(workers):
                worker.join(timeout=0.5)
                if worker.is_alive():
                    continue
                counts.stopped(index)
                if not stopping:
                    log.warning("worker %s exited with %s; restarting", worker.pid,
                                worker.exitcode)
                    workers[index] = context.Process(target=run_worker,
                                                     args=(settings, sock, counts, index))
                    workers[index].start()
    finally:
        sock.close()


def _redact(url: str) -> str:
    """A database URL without its password, for the log."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user, has_password, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if has_password else ''}@{host}"
