"""Real parts for the backups tests: a moto S3 server on loopback, source databases, a gated proxy."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from backups import services
from backups.models import BackupPolicy
from tests.conftest import free_port, wait_for

PART = 5 * 1024 * 1024  # the smallest part S3 (and s3transfer) accept


def server_dsn(dbname: str) -> str:
    db = settings.DATABASES["default"]
    password = f" password={db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (
        f"host={db.get('HOST') or '127.0.0.1'} port={db.get('PORT') or 5432} "
        f"user={db.get('USER') or 'postgres'}{password} dbname={dbname}"
    )


def create_database(name: str) -> str:
    with psycopg.connect(server_dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server_dsn(name)


def drop_database(name: str) -> None:
    with psycopg.connect(server_dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


SAMPLE_SCHEMA = """
CREATE SCHEMA billing;
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, note text, created timestamptz);
CREATE TABLE events (id bigint PRIMARY KEY, customer_id int REFERENCES customers(id), payload text);
CREATE TABLE billing.invoices (id int PRIMARY KEY, amount numeric(12,2), paid boolean, blob bytea);
CREATE TABLE empty_table (id int);
INSERT INTO customers (name, note, created)
  SELECT 'customer ' || g, E'line one\\nline\\ttwo ünïcödé ' || g,
         '2026-01-01'::timestamptz + g * interval '1 minute'
  FROM generate_series(1, 500) g;
INSERT INTO events
  SELECT g, 1 + g % 500, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, %(events)s) g;
INSERT INTO billing.invoices
  SELECT g, g * 1.25, g % 2 = 0, decode(md5(g::text), 'hex') FROM generate_series(1, 300) g;
"""


def fill_sample(dsn: str, *, events: int = 20000, noise_rows: int = 0) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SAMPLE_SCHEMA.replace("%(events)s", str(events)).encode())
        if noise_rows:
            # Random hex compresses about 2x only: enough rows make the dump span several S3 parts.
            conn.execute(
                "CREATE TABLE noise AS SELECT g AS id, md5(random()::text) || md5(random()::text) "
                "|| md5(random()::text) || md5(random()::text) AS junk FROM generate_series(1, %s) g",
                (noise_rows,),
            )


def fingerprint(dsn: str) -> dict[str, str]:
    """An order-independent digest of every user table's rows (equal iff the data is equal)."""
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2"
        ).fetchall()
        out = {}
        for schema, table in tables:
            query = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {}.{} t"
            )
            row = conn.execute(query.format(sql.Identifier(schema), sql.Identifier(table))).fetchone()
            assert row is not None
            out[f"{schema}.{table}"] = f"{row[0]}:{row[1]}"
        return out


@pytest.fixture(scope="session")
def source_db() -> Iterator[str]:
    """A PostgreSQL database with varied sample data (schemas, newlines, unicode, bytea, an empty table)."""
    name = f"cp_bk_src_{os.getpid()}"
    dsn = create_database(name)
    fill_sample(dsn)
    yield dsn
    drop_database(name)


@pytest.fixture(scope="session")
def big_source_db() -> Iterator[str]:
    """The sample plus ~26 MB of random hex: a dump of three 5 MiB parts after compression."""
    name = f"cp_bk_big_{os.getpid()}"
    dsn = create_database(name)
    fill_sample(dsn, noise_rows=200_000)
    yield dsn
    drop_database(name)


@pytest.fixture
def source_env(source_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The source DSN in an environment variable: policies store the variable's name, never the DSN."""
    monkeypatch.setenv("BK_SOURCE_DSN", source_db)
    return "BK_SOURCE_DSN"


@pytest.fixture
def scratch_db() -> Iterator[Callable[[str], str]]:
    """``scratch_db("target")`` -> DSN of a fresh database, dropped after the test."""
    made: list[str] = []

    def make(label: str) -> str:
        name = f"cp_bk_{label}_{uuid.uuid4().hex[:8]}"
        made.append(name)
        return create_database(name)

    yield make
    for name in made:
        drop_database(name)


class MotoServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        binary = Path(sys.executable).parent / "moto_server"
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, timeout=30)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """``moto_server`` on a free loopback port, with fake credentials in the environment."""
    saved = {k: os.environ.get(k) for k in FAKE_AWS}
    os.environ.update(FAKE_AWS)
    server = MotoServer()
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def small_parts(settings: Any, monkeypatch: pytest.MonkeyPatch) -> int:
    """Small multipart parts here and in worker subprocesses, so test-sized dumps go multipart."""
    settings.BACKUPS_MULTIPART_CHUNK_BYTES = PART
    settings.BACKUPS_MULTIPART_THRESHOLD_BYTES = PART
    monkeypatch.setenv("BACKUPS_MULTIPART_CHUNK_BYTES", str(PART))
    monkeypatch.setenv("BACKUPS_MULTIPART_THRESHOLD_BYTES", str(PART))
    return PART


@pytest.fixture
def bucket(moto: MotoServer) -> tuple[str, Any]:
    name = f"bk-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return name, client


@pytest.fixture
def s3_policy(
    db: Any, source_env: str, bucket: tuple[str, Any], moto: MotoServer, small_parts: int
) -> BackupPolicy:
    return services.policy_create(
        name=f"s3-{uuid.uuid4().hex[:6]}",
        source_dsn_env=source_env,
        storage_kind="s3",
        s3_bucket=bucket[0],
        s3_prefix="nightly/",
        s3_endpoint_url=moto.url,
        s3_region="us-east-1",
    )


@pytest.fixture
def local_policy(db: Any, source_env: str, tmp_path: Path) -> BackupPolicy:
    return services.policy_create(
        name=f"local-{uuid.uuid4().hex[:6]}",
        source_dsn_env=source_env,
        storage_kind="local",
        local_path=str(tmp_path / "store"),
    )


class GatedProxy:
    """A TCP proxy on loopback that stops forwarding uploads after ``limit`` bytes until released.

    Lets a test hold a real upload in the middle (multipart started, parts pending).
    """

    def __init__(self, upstream_port: int, limit: int) -> None:
        self.upstream_port = upstream_port
        self.limit = limit
        self.forwarded = 0
        self.lock = threading.Lock()
        self.open = threading.Event()
        self.blocked = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, gated: bool) -> None:
        try:
            while data := src.recv(65536):
                if gated:
                    with self.lock:
                        self.forwarded += len(data)
                        over = self.forwarded > self.limit
                    if over and not self.open.is_set():
                        self.blocked.set()
                        self.open.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.open.set()
        self.sock.close()


@pytest.fixture
def gated_proxy(moto: MotoServer) -> Iterator[Callable[[int], GatedProxy]]:
    proxies: list[GatedProxy] = []

    def make(limit: int) -> GatedProxy:
        proxy = GatedProxy(moto.port, limit)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()
