"""The run lease: one run at a time per review and date, from its first task to its last.

An Airflow run is many task processes, possibly on several workers, so a process lock
cannot cover it. The lease is a small JSON file (``locks/<id>__<date>.json``) naming the
holding run. Every task of the run takes or renews it; a task of another run finds it
held and fails at once with the holder's name. The run's teardown releases it, and a
lease not renewed for :data:`settings.RUN_LEASE_TTL_SECONDS` (a run killed with its
workers) expires by itself. Read-modify-write of the lease is serialised with ``flock``.

On an object store there is no ``flock``: the lease is read, written and read back
(the last writer wins and the loser sees it), which narrows but does not close the race
between two runs starting in the same second; ``max_active_runs=1`` covers the rest.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

from include.living_review.storage.atomic import CorruptFile, read_json, write_json_atomic
from include.living_review.storage.layout import Layout
from include.living_review.storage.paths import is_remote, storage_error

log = logging.getLogger(__name__)


class PartitionLocked(RuntimeError):
    """Another run holds this review and date."""


@contextlib.contextmanager
def _flock(path: Any, *, wait: bool, what: str) -> Iterator[None]:
    if is_remote(path):
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as exc:
        raise storage_error("create the lock file", path, exc) from exc
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise PartitionLocked(f"another process is {what}; wait for it to finish") from exc
        yield
    finally:
        handle.close()


def date_lock(layout: Layout, *, wait: bool = False) -> contextlib.AbstractContextManager[None]:
    """An exclusive ``flock`` on one review and date while files are committed or recovered.

    A no-op on an object store (see the module docstring). Not held while the lease is
    read or written, which has its own lock file: ``flock`` locks of one process on two
    handles of the same file would deadlock each other.
    """
    return _flock(layout.lock_file, wait=wait,
                  what=f"writing review {layout.review_id!r} for {layout.snapshot_date}")


def _lease_lock(layout: Layout) -> contextlib.AbstractContextManager[None]:
    return _flock(layout.lease_file.with_name(layout.lease_file.name + ".lock"), wait=True, what="")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _expiry(lease: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(lease["expires_at"])
    except (KeyError, TypeError, ValueError):
        return None


def read_lease(layout: Layout) -> dict[str, Any] | None:
    """The lease, or None when there is none; a torn or malformed one protects nothing (it is logged)."""
    try:
        lease = read_json(layout.lease_file)
        problem = None if lease is None or (isinstance(lease, dict) and isinstance(lease.get("run_id"), str)
                                            and _expiry(lease) is not None) else "no run_id and expires_at"
    except CorruptFile as exc:
        problem = f"not valid JSON: {exc.__cause__}"
    if problem is None:
        return lease
    log.warning("%s is not a run lease (%s); it protects nothing and is rewritten by the next holder",
                layout.lease_file, problem)
    return None


def _expired(lease: dict[str, Any], now: dt.datetime) -> bool:
    expiry = _expiry(lease)
    return expiry is None or expiry <= now


def describe(lease: dict[str, Any]) -> str:
    return (f"run {lease.get('run_id')!r} (host {lease.get('host')}, pid {lease.get('pid')}, "
            f"since {lease.get('acquired_at')}, renewed {lease.get('renewed_at')})")


def hold_lease(layout: Layout, run_id: str, *, ttl_seconds: float, task: str = "") -> dict[str, Any]:
    """Take or renew the lease for ``run_id``; raise :class:`PartitionLocked` if another run holds it."""
    now = _now()
    with _lease_lock(layout):
        lease = read_lease(layout)
        if lease and lease.get("run_id") != run_id and not _expired(lease, now):
            raise PartitionLocked(
                f"review {layout.review_id!r} for {layout.snapshot_date} is held by {describe(lease)}; "
                f"this run ({run_id!r}) stops so the two cannot mix their files. Wait for that run to "
                f"finish, or, if it is dead, wait until its lease expires at {lease.get('expires_at')} "
                f"or delete {layout.lease_file}")
        if lease and lease.get("run_id") != run_id:
            log.warning("the lease of %s expired at %s; taking it over", describe(lease), lease.get("expires_at"))
            lease = None
        fresh = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "task": task,
                 "acquired_at": (lease or {}).get("acquired_at", now.isoformat()), "renewed_at": now.isoformat(),
                 "expires_at": (now + dt.timedelta(seconds=ttl_seconds)).isoformat()}
        write_json_atomic(fresh, layout.lease_file)
    if is_remote(layout.lease_file):
        readback = read_lease(layout)
        if readback and readback.get("run_id") != run_id:
            raise PartitionLocked(f"review {layout.review_id!r} for {layout.snapshot_date} was taken by "
                                  f"{describe(readback)} at the same moment; this run stops")
    return fresh


def release_lease(layout: Layout, run_id: str) -> bool:
    """Give the lease up if ``run_id`` holds it; True when it did."""
    with _lease_lock(layout):
        lease = read_lease(layout)
        if not lease or lease.get("run_id") != run_id:
            return False
        layout.lease_file.unlink(missing_ok=True)
    return True
