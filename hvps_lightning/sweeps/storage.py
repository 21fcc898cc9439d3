"""Where a sweep's study lives: storage URLs, and the trials a dead worker left behind.

Storage URL forms (``--storage``):

* none: ``journal:///<out>/study.journal``, a journal file in the output folder (one machine,
  any number of worker processes).
* ``journal:///abs/path/file.journal`` or ``journal:rel/path.journal``: an Optuna journal file
  (``JournalFileBackend`` with its symlink lock, which works on NFS and other shared
  filesystems), so machines that mount the same folder join one study. A plain path ending in
  ``.journal`` or ``.log`` means the same.
* ``sqlite:///path.db``, ``postgresql://user:pass@host/db``, ``mysql+pymysql://...``: any
  SQLAlchemy URL, through Optuna's ``RDBStorage`` with heartbeats, so that a machine that dies
  mid-trial has that trial failed by the survivors. SQLite suits one machine; use
  PostgreSQL/MySQL for many machines.
* ``redis://host:port/db``: Optuna's Redis journal (needs the ``redis`` package).

Every worker process builds its own storage object from the URL (storage objects do not
cross process boundaries).

Dead workers: a trial whose process died stays RUNNING in the storage. RDB storage has
heartbeats (every 30 s, failed after 120 s of silence by whichever worker starts a trial
next). The journal has none, so a sweep starting on a host fails the RUNNING trials of its
own host whose process no longer exists (:func:`fail_dead_local_trials`); RUNNING trials of
other hosts are presumed alive. A process killed in the middle of a journal write leaves the
journal's ``.lock`` behind, which Optuna breaks after 30 s.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from hvps_lightning.errors import HVPSError
from hvps_lightning.io import process_alive

#: An RDB trial whose worker sent no heartbeat for this long is failed by the other workers.
HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120

#: Trial user attribute naming the process that runs a trial (``host:pid``).
WORKER_ATTR = "worker"


def default_storage_url(out_dir: str | Path) -> str:
    """Return the storage URL used when ``--storage`` is not given: a journal file in ``out_dir``."""
    return f"journal://{Path(out_dir).resolve() / 'study.journal'}"


def _journal_path(url: str) -> Path | None:
    if url.startswith("journal:"):
        rest = url[len("journal:") :]
        # journal:///abs -> /abs ; journal:rel -> rel
        return Path(rest[2:] if rest.startswith("//") else rest)
    if "://" not in url and url.endswith((".journal", ".log")):
        return Path(url)
    return None


def describe_storage(url: str) -> str:
    """Return a short, password-free description of a storage URL for logs and summaries."""
    journal = _journal_path(url)
    if journal is not None:
        return f"journal:{journal}"
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


#: tries at opening an RDB storage whose tables another process is creating at the same time
SCHEMA_ATTEMPTS = 4


def open_storage(url: str) -> BaseStorage:
    """Build the Optuna storage of ``url`` (see the module docstring for the forms).

    Raises:
        HVPSError: if the URL has an unknown form, its folder does not exist or its database
            driver is not installed.
    """
    journal = _journal_path(url)
    if journal is not None:
        if not journal.parent.is_dir():
            raise HVPSError(f"--storage {describe_storage(url)}: folder {journal.parent} does not exist")
        backend = optuna.storages.journal.JournalFileBackend(str(journal))
        return optuna.storages.JournalStorage(backend)
    if url.startswith("redis://"):
        try:
            backend = optuna.storages.journal.JournalRedisBackend(url)
        except ImportError as exc:
            raise HVPSError(
                f"--storage {describe_storage(url)}: the redis package is not installed ({exc})"
            ) from None
        return optuna.storages.JournalStorage(backend)
    if "://" not in url:
        raise HVPSError(
            f"--storage {describe_storage(url)}: not a storage URL; use journal:///path/file.journal, "
            "sqlite:///file.db or an RDB URL such as postgresql://user:pass@host/db"
        )
    engine_kwargs = {}
    if url.startswith("sqlite"):
        # Several worker processes write one SQLite file: wait for the lock instead of failing.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_INTERVAL_S,
                    grace_period=GRACE_PERIOD_S,
                )
        except ImportError as exc:
            raise HVPSError(f"--storage {describe_storage(url)}: database driver missing ({exc})") from None
        except Exception as exc:  # sqlalchemy.exc.ArgumentError, OperationalError, ...
            # Two sweeps started at once on a new database both create Optuna's tables; the one
            # that loses gets an IntegrityError or "table ... already exists" and finds the tables
            # there on its next try.
            racing = type(exc).__name__ == "IntegrityError" or "already exists" in str(exc)
            if racing and attempt + 1 < SCHEMA_ATTEMPTS:
                time.sleep(0.5 * (attempt + 1))
                continue
            problem = f"{type(exc).__name__}: {exc}"
            raise HVPSError(f"--storage {describe_storage(url)}: cannot open ({problem})") from None
    raise AssertionError("unreachable")


def worker_identity() -> str:
    """Return ``host:pid`` of this process (recorded on each trial it runs)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_dead_local_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker ran on this host and is no longer alive.

    A killed sweep (SIGKILL, power loss) leaves its trial RUNNING forever in a journal file;
    RDB storage has heartbeats for other machines, but the journal has none, so a rerun on
    the same host cleans up after itself here. Trials of other hosts are left alone (they may
    be running). Returns the numbers of the trials failed.
    """
    host = socket.gethostname()
    failed: list[int] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get(WORKER_ATTR, ""))
        owner_host, _, pid = owner.rpartition(":")
        if owner_host != host or not pid.isdigit() or process_alive(int(pid)):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        except (RuntimeError, ValueError):
            continue  # another process finished it first
        failed.append(trial.number)
    return failed
