"""The streaming pipeline: ``pg_dump -Fc -Z0`` (or ``tar``) -> compressor -> sha256 -> storage.

Memory is bounded by the read chunk plus the multipart parts in flight; nothing is
written to local disk.  Reading back (verification, drills, restores) streams the
same way and recomputes the sha256 of the stored bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import queue
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from functools import cache
from typing import IO, Any

import psycopg
import zstandard
from django.conf import settings
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from backups.models import BackupPolicy

READ_CHUNK = 1 << 20
READ_AHEAD = 8  # chunks buffered between the producer and the compressor
STDERR_TAIL = 4000


class PipelineError(Exception):
    """A step of the pipeline failed; the message is safe to show (no secrets)."""


# --- connections ---------------------------------------------------------------------


def resolve_dsn(*, dsn_env: str = "", db_alias: str = "") -> str:
    """The libpq connection string of a source or target, from an env var name or a Django alias."""
    if dsn_env:
        value = os.environ.get(dsn_env, "")
        if not value:
            raise PipelineError(f"environment variable {dsn_env} is not set")
        return value
    if db_alias:
        db = settings.DATABASES.get(db_alias)
        if db is None or "postgresql" not in db.get("ENGINE", ""):
            raise PipelineError(f"{db_alias!r} is not a PostgreSQL database alias")
        params = {
            "dbname": db.get("NAME"),
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
            "host": db.get("HOST") or None,
            "port": str(db["PORT"]) if db.get("PORT") else None,
        }
        return make_conninfo("", **{k: v for k, v in params.items() if v})
    raise PipelineError("no database given (an environment variable name or a database alias)")


def database_name(dsn: str) -> str:
    try:
        return str(conninfo_to_dict(dsn).get("dbname") or "")
    except psycopg.ProgrammingError as exc:
        raise PipelineError("the DSN cannot be parsed") from exc


def with_dbname(dsn: str, dbname: str) -> str:
    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def libpq_args(dsn: str) -> tuple[str, dict[str, str]]:
    """``(--dbname value, env)`` with the password moved to PGPASSWORD so it never shows in ``ps``."""
    params = conninfo_to_dict(dsn)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **params), env


@cache
def tool_version(tool: str) -> str:
    out = subprocess.run(  # noqa: S603 (argv list, no shell)
        [tool, "--version"], capture_output=True, text=True, check=True, timeout=30
    )
    return out.stdout.strip()


# --- compression -----------------------------------------------------------------------


def compressor(kind: str, level: int) -> Callable[[bytes | None], bytes]:
    """A function taking raw chunks (None = end) and returning compressed bytes."""
    if kind == BackupPolicy.Compression.GZIP:
        gz = zlib.compressobj(max(1, min(level, 9)), zlib.DEFLATED, 31)
        return lambda data: gz.compress(data) if data is not None else gz.flush()
    zc = zstandard.ZstdCompressor(level=level).compressobj()
    return lambda data: zc.compress(data) if data is not None else zc.flush()


def decompressor(kind: str) -> Callable[[bytes], bytes]:
    if kind == BackupPolicy.Compression.GZIP:
        gz = zlib.decompressobj(31)
        return gz.decompress
    zd = zstandard.ZstdDecompressor().decompressobj()
    return zd.decompress


# --- the upload stream -------------------------------------------------------------------


class CompressedStream(io.RawIOBase):
    """A file-like view of ``compress(source)`` that hashes and counts what it hands out.

    ``read(n)`` returns exactly ``n`` bytes until the end (S3 parts must be full-size);
    an error of the source propagates out of ``read`` so the upload aborts.
    """

    def __init__(self, source: Iterator[bytes], compress: Callable[[bytes | None], bytes]) -> None:
        self._source = source
        self._compress = compress
        self._buffer = bytearray()
        self._done = False
        self.raw_bytes = 0
        self.stored_bytes = 0
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def _pull(self) -> None:
        try:
            raw = next(self._source)
        except StopIteration:
            self._done = True
            out = self._compress(None)
        else:
            self.raw_bytes += len(raw)
            out = self._compress(raw)
        if out:
            self._buffer += out

    def read(self, size: int | None = -1) -> bytes:
        want = size if size is not None and size >= 0 else None
        while not self._done and (want is None or len(self._buffer) < want):
            self._pull()
        if want is None or want >= len(self._buffer):
            data = bytes(self._buffer)
            self._buffer = bytearray()
        else:
            with memoryview(self._buffer) as view:
                data = bytes(view[:want])
            del self._buffer[:want]
        self.sha256.update(data)
        self.stored_bytes += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# --- sources -------------------------------------------------------------------------


@dataclasses.dataclass
class SourceResult:
    """What a source learnt while producing its stream (filled in as it runs)."""

    name: str = ""
    tool_version: str = ""
    server_version: str = ""
    row_counts: dict[str, int] = dataclasses.field(default_factory=dict)


def _grow_pipe(pipe: IO[bytes]) -> None:
    """Give a pipe 1 MiB of buffer (Linux), so producer and consumer wait on each other less."""
    with contextlib.suppress(OSError, AttributeError, ValueError):
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)


def _read_ahead(
    stream: IO[bytes], out: queue.Queue[bytes | BaseException | None], stop: threading.Event
) -> None:
    """Read a pipe on its own thread, so the producer keeps running while chunks are compressed."""

    def offer(item: bytes | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    try:
        while chunk := stream.read(READ_CHUNK):
            if not offer(chunk):
                return
    except BaseException as exc:  # handed to the consumer
        offer(exc)
    finally:
        offer(None)


def _stream_process(
    argv: list[str], env: dict[str, str] | None, on_first: Callable[[], None]
) -> Iterator[bytes]:
    """Yield a command's stdout; raise PipelineError (with its stderr tail) if it fails.

    A reader thread keeps up to ``READ_AHEAD`` chunks ahead: the command and the
    compression then run in parallel instead of taking turns on a 64 KiB pipe.
    """
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env)  # noqa: S603 (argv list)
        if proc.stdout is None:  # pragma: no cover
            raise PipelineError(f"{argv[0]} has no stdout")
        _grow_pipe(proc.stdout)
        chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=READ_AHEAD)
        stop = threading.Event()
        reader = threading.Thread(target=_read_ahead, args=(proc.stdout, chunks, stop), daemon=True)
        reader.start()
        first = True
        try:
            while (item := chunks.get()) is not None:
                if isinstance(item, BaseException):
                    raise PipelineError(f"reading from {argv[0]} failed: {item}")
                if first:
                    on_first()
                    first = False
                yield item
            code = proc.wait()
        finally:
            stop.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
            proc.stdout.close()
            on_first()
        if code != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-STDERR_TAIL:]
            raise PipelineError(f"{argv[0]} exited with {code}: {tail.strip()}")


USER_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
ORDER BY 1, 2
"""


def count_rows(cur: psycopg.Cursor[Any]) -> dict[str, int]:
    """Exact row count of every user table, as ``{"schema.table": n}``."""
    cur.execute(USER_TABLES)
    counts: dict[str, int] = {}
    for schema, table in cur.fetchall():
        cur.execute(
            sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        )
        row = cur.fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def postgres_source(dsn: str, result: SourceResult) -> Iterator[bytes]:
    """``pg_dump -Fc -Z0`` of ``dsn`` inside an exported snapshot, counting rows in that same snapshot.

    The counts run on the exporting connection while pg_dump streams; the snapshot is
    released only once pg_dump has imported it (its first output byte) and the counts
    are done, so the recorded counts describe exactly the dumped data.
    """
    result.tool_version = tool_version("pg_dump")
    dbname, env = libpq_args(dsn)
    try:
        conn = psycopg.connect(dsn, autocommit=False)
    except psycopg.Error as exc:
        raise PipelineError(f"cannot connect to the source database: {exc}".split("\n")[0]) from exc
    started = threading.Event()
    count_error: list[BaseException] = []
    thread: threading.Thread | None = None
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SELECT current_setting('server_version'), current_database(), pg_export_snapshot()")
            row = cur.fetchone()
            if row is None:  # pragma: no cover
                raise PipelineError("cannot export a snapshot")
            result.server_version, result.name, snapshot = str(row[0]), str(row[1]), str(row[2])

        def counter() -> None:
            try:
                if settings.BACKUPS_COUNT_ROWS:
                    with conn.cursor() as cur:
                        result.row_counts = count_rows(cur)
            except BaseException as exc:  # reported by the generator below
                count_error.append(exc)
            finally:
                # The exporting transaction must outlive pg_dump's import of the snapshot.
                started.wait()
                conn.rollback()

        thread = threading.Thread(target=counter, name="backup-row-counts", daemon=True)
        thread.start()
        argv = ["pg_dump", "--format=custom", "--compress=0", f"--snapshot={snapshot}", f"--dbname={dbname}"]
        yield from _stream_process(argv, env, started.set)
        started.set()
        thread.join()
        if count_error:
            raise PipelineError(f"counting rows failed: {count_error[0]}")
    finally:
        started.set()
        if thread is not None and thread.is_alive():
            conn.cancel_safe()
            thread.join(timeout=30)
        conn.close()


def directory_source(path: str, result: SourceResult) -> Iterator[bytes]:
    """A streamed ``tar`` of the directory (relative names, so it extracts anywhere)."""
    if not os.path.isdir(path):
        raise PipelineError(f"{path} is not a directory")
    result.name = path
    result.tool_version = tool_version("tar").splitlines()[0]
    yield from _stream_process(
        ["tar", "--create", "--file=-", f"--directory={path}", "."], None, lambda: None
    )


# --- reading back ------------------------------------------------------------------------


@dataclasses.dataclass
class ReadResult:
    sha256: str = ""
    stored_bytes: int = 0
    raw_bytes: int = 0


def read_back(stream: IO[bytes], *, compression: str | None, result: ReadResult) -> Iterator[bytes]:
    """Yield decompressed chunks of a stored object (or nothing, if compression is None) while hashing it."""
    digest = hashlib.sha256()
    decompress = decompressor(compression) if compression else None
    try:
        while chunk := stream.read(READ_CHUNK):
            digest.update(chunk)
            result.stored_bytes += len(chunk)
            if decompress is not None:
                out = decompress(chunk)
                result.raw_bytes += len(out)
                if out:
                    yield out
    except zstandard.ZstdError as exc:
        raise PipelineError(f"cannot decompress: {exc}") from exc
    except zlib.error as exc:
        raise PipelineError(f"cannot decompress: {exc}") from exc
    finally:
        stream.close()
        result.sha256 = digest.hexdigest()


def pg_restore(
    chunks: Iterator[bytes], *, dsn: str, extra: list[str], before_commit: Callable[[], None]
) -> str:
    """Feed an archive stream to ``pg_restore --single-transaction``; returns its output.

    ``before_commit`` runs after the whole stream was read and before pg_restore gets
    the last chunk; raising there kills pg_restore, so its transaction never commits.
    """
    dbname, env = libpq_args(dsn)
    argv = ["pg_restore", "--single-transaction", "--exit-on-error", f"--dbname={dbname}", *extra]
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(  # noqa: S603 (argv list, no shell)
            argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env
        )
        stdin = proc.stdin
        if stdin is None:  # pragma: no cover
            raise PipelineError("pg_restore has no stdin")
        _grow_pipe(stdin)
        # A writer thread feeds pg_restore while this thread reads, hashes and decompresses.
        pending: queue.Queue[bytes | None] = queue.Queue(maxsize=READ_AHEAD // 2)
        broken = threading.Event()

        def writer() -> None:
            while (item := pending.get()) is not None:
                if broken.is_set():
                    continue  # pg_restore stopped reading: drain, its exit code says why
                try:
                    stdin.write(item)
                except (OSError, ValueError):
                    broken.set()

        thread = threading.Thread(target=writer, name="pg-restore-writer", daemon=True)
        thread.start()
        try:
            try:
                # The last chunk is held back until ``before_commit`` passed: without the
                # archive's final bytes pg_restore cannot finish, so it cannot commit.
                held = b""
                for chunk in chunks:
                    if held:
                        pending.put(held)
                    held = chunk
                before_commit()
                pending.put(held)
            except BaseException:
                proc.kill()
                raise
            finally:
                pending.put(None)
                thread.join()
            with contextlib.suppress(OSError, ValueError):
                stdin.close()
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        text = out.read().decode(errors="replace")[-STDERR_TAIL:]
    if code != 0:
        raise PipelineError(f"pg_restore exited with {code}: {text.strip()}")
    return text
