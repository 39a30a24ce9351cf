"""Where MLflow copies go: the tracking store, its experiment, and one client per process.

The store is ``MLFLOW_TRACKING_URI`` when it is set (a tracking server, a database, ...), else a SQLite database
inside the runs folder, ``<runs_dir>/mlflow.db``, with the artifacts beside it in ``<runs_dir>/.mlflow-artifacts/``
(a dot folder, so the walk for run folders never takes an artifact's ``config.yaml`` for a run). SQLite is MLflow's
own default store since 3.7; its file store is deprecated. The experiment is ``MLFLOW_EXPERIMENT_NAME``, else
``emabench``.

:meth:`MlflowStore.check` runs before anything trains: for a store of ``MLFLOW_TRACKING_URI``, that MLflow is
installed, that the store answers within :data:`CHECK_TIMEOUT_S` and that it takes a write (it tags the experiment:
:meth:`MlflowStore.open`); for the default store, what can be known without MLflow and without writing anything
(MLflow installed, the runs folder writable, ``mlflow.db`` a SQLite file), since opening it costs ~4 s on its first
use (importing MLflow, creating the database) that the sender process spends while runs train. A failed check is an
:class:`~emabench.errors.InputError` naming the extra or the URI. Afterwards, a server that stops answering is
asked :data:`RETRIES` more times, :data:`TIMEOUT_S` each (unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` or
``MLFLOW_HTTP_REQUEST_TIMEOUT`` say otherwise): the copy then stops within about a minute (training never waits for
it), rather than after MLflow's default of minutes per call.

The default SQLite store is opened in write-ahead-log mode with ``synchronous=NORMAL``: a write is a commit to the
log without an ``fsync`` (measured here: 7-10 ms a call instead of ~30 ms, and 2.2 s instead of 7.8 s to create the
database). A power cut can lose the copy's last writes, never the run folders, and the copy can be made again
(re-run the same command). A store given through ``MLFLOW_TRACKING_URI`` is used as MLflow opens it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from emabench.errors import InputError, one_line
from emabench.runs.layout import MLFLOW_ARTIFACTS, MLFLOW_DB

EXPERIMENT = "emabench"
CHECK_TIMEOUT_S = 10  # seconds the store has to answer the check before training
RETRIES = 2  # a call that fails while runs train is tried this many more times ...
TIMEOUT_S = 20  # ... waiting this long for each answer (unless the user's MLFLOW_HTTP_REQUEST_* say otherwise)
EXTRA = "pip install 'emabench[mlflow]'"

_FAST_SQLITE: set[str] = set()  # database files this process opens in WAL mode (see the module docstring)


def import_mlflow() -> ModuleType:
    """MLflow, or an :class:`InputError` naming the extra to install."""
    try:
        import mlflow
    except ImportError:
        raise InputError(f"--track mlflow needs MLflow, which is not installed: {EXTRA}") from None
    return mlflow


class MlflowStore:
    """One tracking store and experiment; :attr:`client` is this process's (a forked worker makes its own)."""

    def __init__(self, runs_dir: str | Path) -> None:
        runs = Path(runs_dir).absolute()
        given = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
        self.default = not given
        self.uri = given or f"sqlite:///{runs / MLFLOW_DB}"
        self.artifacts = None if given else runs / MLFLOW_ARTIFACTS
        self.experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip() or EXPERIMENT
        self.experiment_id = ""
        self._client: Any = None
        self._pid = 0

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for a spawned worker: everything but the client (the worker opens its own)."""
        return self.__dict__ | {"_client": None, "_pid": 0}

    def check(self) -> None:
        """Before training. A store of ``MLFLOW_TRACKING_URI``: reachable, the experiment there (created if need be),
        a write taken (:meth:`open`). The default one: what can be known without MLflow and without writing — MLflow
        installed, the runs folder writable, ``mlflow.db`` (if there) a SQLite file that can be written; MLflow
        opens (or creates) it in the process that writes the copy, while runs train."""
        if not self.default:
            self.open()
            return
        if importlib.util.find_spec("mlflow") is None:
            import_mlflow()  # the one-line error naming the extra
        database = Path(self.uri.removeprefix("sqlite:///"))
        problem = _unwritable(database) or _not_sqlite(database)
        if problem or (self.artifacts is not None and self.artifacts.exists() and not self.artifacts.is_dir()):
            reason = problem or f"{self.artifacts} is not a folder"
            raise InputError(f"--track mlflow: the tracking store {self.uri} cannot be used ({reason})")

    def open(self) -> None:
        """Open the store: reachable, the experiment there (created if need be), a write taken; an
        :class:`InputError` naming the URI if not."""
        import_mlflow()
        with _quiet(), _http_limits(retries=0, timeout=CHECK_TIMEOUT_S):
            try:
                if self.artifacts is not None:
                    self.artifacts.mkdir(parents=True, exist_ok=True)
                self.experiment_id = self._experiment()
                self.client.set_experiment_tag(self.experiment_id, "emabench.checked", time.strftime("%FT%T%z"))
            except Exception as err:  # MLflow's, the database driver's, the network's: all mean "cannot write here"
                raise InputError(f"--track mlflow: the tracking store {self.uri} cannot be used ({why(err)})") from None
        _default_http_limits()

    @property
    def client(self) -> Any:
        """This process's ``MlflowClient``. After a fork the inherited one's database connections are the parent's:
        they are set aside (SQLAlchemy's ``dispose(close=False)``) so the worker opens its own."""
        if self._client is None or self._pid != os.getpid():
            from mlflow import MlflowClient

            if self.default:
                _fast_sqlite(self.uri.removeprefix("sqlite:///"))
            inherited, self._client, self._pid = self._client is not None, MlflowClient(self.uri), os.getpid()
            if inherited:
                engine = getattr(getattr(self._client._tracking_client, "store", None), "engine", None)
                if engine is not None:
                    engine.dispose(close=False)
        return self._client

    def _experiment(self) -> str:
        client = self.client
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        location = self.artifacts.as_uri() if self.artifacts is not None else None
        try:
            return str(client.create_experiment(self.experiment, artifact_location=location))
        except Exception:  # created by another process meanwhile
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return str(found.experiment_id)


def _unwritable(database: Path) -> str:
    """Why ``database`` (or the folder it would be created in) cannot be written, or ``""``."""
    target = database if database.exists() else next(p for p in database.parents if p.exists())
    if database.exists() and not database.is_file():
        return f"{database} is not a file"
    if not os.access(target, os.W_OK):
        return f"{target} cannot be written"
    return ""


def _not_sqlite(database: Path) -> str:
    """Why an existing ``database`` is not a SQLite database, or ``""`` (an empty file is one)."""
    if not database.is_file():
        return ""
    try:
        with open(database, "rb") as handle:
            header = handle.read(16)
    except OSError as err:
        return f"{database}: {err.strerror or err}"
    return "" if not header or header == b"SQLite format 3\x00" else f"{database} is not a SQLite database"


def why(err: BaseException) -> str:
    """One short line for an error of MLflow's or the network's."""
    return one_line(f"{type(err).__name__}: {err}", 300)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow and alembic announce a new database on the log at INFO; the CLI alone speaks to people."""
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def _http_limits(retries: int, timeout: int) -> Iterator[None]:
    """MLflow reads its HTTP retry and timeout settings at each call: the check waits ``timeout`` once."""
    names = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries), "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout)}
    previous = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _default_http_limits() -> None:
    """:data:`RETRIES` and :data:`TIMEOUT_S` for the calls while runs train, unless the user chose their own."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(RETRIES))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(TIMEOUT_S))


def _fast_sqlite(database: str) -> None:
    """Open ``database`` (the default store's file) in WAL mode with ``synchronous=NORMAL`` in this process: a
    SQLAlchemy ``connect`` listener, since MLflow makes its engine itself. Other databases are left alone."""
    target = os.path.abspath(database)
    if target in _FAST_SQLITE:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def pragmas(connection: Any, record: Any) -> None:
        if not isinstance(connection, sqlite3.Connection):
            return
        files = [row[2] for row in connection.execute("PRAGMA database_list").fetchall() if row[1] == "main"]
        if files and os.path.abspath(files[0]) == target:
            with contextlib.suppress(sqlite3.OperationalError):  # another process holds it: its mode stays
                connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(Engine, "connect", pragmas)
    _FAST_SQLITE.add(target)
