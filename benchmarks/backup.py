"""Backup pipeline benchmark: wall time, worker memory and restore-drill time against raw tools.

Usage: DATABASE_URL=postgres://postgres@127.0.0.1:5432/cp_backups python benchmarks/backup.py [--gb 1.0]

Generates a PostgreSQL database (generate_series inserts into UNLOGGED tables, to keep
generation fast; pg_dump dumps their data like any table) and measures, in the same run:
  1. backup wall time of our pipeline vs raw ``pg_dump -Fc -Z0 | zstd > /dev/null``
     (goal <= 1.15x); the catalog's duration is the pipeline alone, without Django start;
  2. peak RSS of the process running the backup (``manage.py backup_run``: the same
     ``backup_execute`` a Celery worker runs) at 0.25 GB and at the full size, to local
     storage and to S3 (moto_server on loopback, multipart) (goal < 200 MB, flat);
  3. restore-drill time to restore vs raw ``zstd -dc | pg_restore --single-transaction``
     of the same object into a fresh database.
The benchmark database, the stored objects and the benchmark's catalog rows are removed
at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from psycopg import sql  # noqa: E402

from backups import pipeline, services  # noqa: E402
from backups.models import Backup, BackupPolicy, Restore  # noqa: E402

BENCH_DB = "cp_bench_backup"
GB = 1024**3
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}

SCHEMA = """
CREATE UNLOGGED TABLE accounts (id int PRIMARY KEY, name text, plan text, created timestamptz);
INSERT INTO accounts SELECT g, 'account ' || g, (ARRAY['free','pro','team'])[1 + g % 3],
  '2025-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 10000) g;
CREATE UNLOGGED TABLE events (
  id bigint, account_id int, kind text, payload text, amount numeric(12,2), created timestamptz
);
"""
BATCH = """
INSERT INTO events SELECT g, g %% 10000, (ARRAY['click','view','buy','refund'])[1 + g %% 4],
  md5(g::text) || ' ' || repeat(chr(97 + g %% 26), 40 + g %% 60), (g %% 100000) / 100.0,
  '2026-01-01'::timestamptz + g * interval '1 second'
FROM generate_series(%s, %s) g
"""


def admin_dsn() -> str:
    return pipeline.with_dbname(pipeline.resolve_dsn(db_alias="default"), "postgres")


def bench_dsn(name: str = BENCH_DB) -> str:
    return pipeline.with_dbname(pipeline.resolve_dsn(db_alias="default"), name)


def recreate(name: str) -> None:
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop(name: str) -> None:
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def db_size(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0


class Generator:
    """Grows the benchmark database in 500k-row batches (~80 MB) up to a size."""

    def __init__(self) -> None:
        recreate(BENCH_DB)
        with psycopg.connect(bench_dsn(), autocommit=True) as conn:
            conn.execute(SCHEMA)
        self.rows = 0

    def grow_to(self, size: int) -> float:
        started = time.monotonic()
        with psycopg.connect(bench_dsn(), autocommit=True) as conn:
            while db_size(bench_dsn()) < size:
                conn.execute(BATCH, (self.rows + 1, self.rows + 500_000))
                self.rows += 500_000
            conn.execute("VACUUM ANALYZE events")
        return time.monotonic() - started


def timed_shell(command: str, env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True, env=env)
    return time.monotonic() - started


def raw_dump_seconds(to: str = "/dev/null") -> float:
    dbname, env = pipeline.libpq_args(bench_dsn())
    return timed_shell(
        f"pg_dump --format=custom --compress=0 '--dbname={dbname}' | zstd -3 -q -c > {to}", env
    )


def run_backup_process(policy: BackupPolicy, env: dict[str, str]) -> tuple[Backup, float, int]:
    """``manage.py backup_run`` in a child process: (catalog row, wall seconds, peak RSS bytes)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "backup_run", policy.name],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"backup_run failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    backup = Backup.objects.filter(policy=policy).order_by("-id").first()
    assert backup is not None
    return backup, wall, usage.ru_maxrss * 1024


class Moto:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            env={**os.environ, **FAKE_AWS},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def mb(n: float) -> str:
    return f"{n / 1024**2:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="Size of the generated database (>= 1).")
    parser.add_argument("--repeat", type=int, default=2, help="Timing repetitions (the best is kept).")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    store = Path(tempfile.mkdtemp(prefix="cp-bench-store-"))
    moto = Moto()
    os.environ.update(FAKE_AWS)
    import boto3

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1").create_bucket(Bucket=bucket)
    env = {**os.environ, **FAKE_AWS, "BENCH_SOURCE_DSN": bench_dsn(), "BACKUPS_COUNT_ROWS": "true"}
    os.environ["BENCH_SOURCE_DSN"] = bench_dsn()
    tag = uuid.uuid4().hex[:6]
    local = services.policy_create(
        name=f"bench-local-{tag}",
        source_dsn_env="BENCH_SOURCE_DSN",
        storage_kind="local",
        local_path=str(store),
        verify_after_backup=False,
        schedule="0 3 * * *",
        drill_schedule="",
        enabled=False,
    )
    s3 = services.policy_create(
        name=f"bench-s3-{tag}",
        source_dsn_env="BENCH_SOURCE_DSN",
        storage_kind="s3",
        s3_bucket=bucket,
        s3_endpoint_url=moto.url,
        s3_region="us-east-1",
        verify_after_backup=False,
        drill_schedule="",
        enabled=False,
    )
    rows: list[tuple[str, str, str, str]] = []
    try:
        gen = Generator()
        t_small = gen.grow_to(int(0.25 * GB))
        small = db_size(bench_dsn())
        print(f"generated {mb(small)} ({gen.rows:,} event rows) in {t_small:.0f} s", flush=True)
        _, _, rss_small_local = run_backup_process(local, env)
        _, _, rss_small_s3 = run_backup_process(s3, env)

        t_big = gen.grow_to(int(args.gb * GB))
        big = db_size(bench_dsn())
        print(f"generated {mb(big)} ({gen.rows:,} event rows) in {t_small + t_big:.0f} s", flush=True)

        raw_null, raw_file, ours_local, ours_wall, ours_nocount = [], [], [], [], []
        backup: Backup | None = None
        rss_big_local = 0
        for _ in range(args.repeat):
            raw_null.append(raw_dump_seconds())
            raw_file.append(raw_dump_seconds(str(store / "raw.dump.zst")))
            backup, wall, rss_big_local = run_backup_process(local, env)
            ours_local.append(backup.duration_seconds or 0)
            ours_wall.append(wall)
            _, _, _ = run_backup_process(local, {**env, "BACKUPS_COUNT_ROWS": "false"})
            nocount = Backup.objects.filter(policy=local).order_by("-id").first()
            ours_nocount.append(nocount.duration_seconds or 0 if nocount else 0)
        (store / "raw.dump.zst").unlink(missing_ok=True)
        s3_backup, _, rss_big_s3 = run_backup_process(s3, env)
        assert backup is not None

        # Restore: raw pg_restore of our object vs the drill, alternating (the machine is shared).
        path = store / backup.storage_key
        raw_restores, drill_restores, drill_totals = [], [], []
        for round_ in range(args.repeat):
            scratch = f"cp_bench_raw_{tag}_{round_}"
            recreate(scratch)
            dbname, penv = pipeline.libpq_args(bench_dsn(scratch))
            raw_restores.append(
                timed_shell(
                    f"zstd -dc -q {path} | pg_restore --single-transaction --no-owner --no-privileges "
                    f"'--dbname={dbname}'",
                    penv,
                )
            )
            drop(scratch)
            drill_started = time.monotonic()
            drill = services.backup_drill(backup=backup)
            drill_totals.append(time.monotonic() - drill_started)
            if drill.status != "passed":
                raise SystemExit(f"drill failed: {drill.error}")
            drill_restores.append(float(drill.details["time_to_restore_seconds"]))
        raw_restore = min(raw_restores)

        best_raw = min(raw_null)
        rows += [
            ("database size", mb(big), f"0.25 GB stage: {mb(small)}", ""),
            ("dump raw / stored", mb(backup.raw_bytes or 0), mb(backup.stored_bytes or 0), "zstd -3"),
            ("raw pg_dump -Fc -Z0 | zstd > /dev/null", f"{best_raw:.1f} s", "baseline", ""),
            (
                "raw pg_dump | zstd > file (same disk)",
                f"{min(raw_file):.1f} s",
                f"{min(raw_file) / best_raw:.2f}x",
                "",
            ),
            (
                "ours -> local dir (pipeline, exact counts)",
                f"{min(ours_local):.1f} s",
                f"{min(ours_local) / best_raw:.2f}x",
                "goal <= 1.15x",
            ),
            (
                "ours -> local dir (pipeline, no counts)",
                f"{min(ours_nocount):.1f} s",
                f"{min(ours_nocount) / best_raw:.2f}x",
                "",
            ),
            (
                "ours -> local dir (whole command)",
                f"{min(ours_wall):.1f} s",
                f"{min(ours_wall) / best_raw:.2f}x",
                "+ Django start",
            ),
            (
                f"ours -> S3 (moto, {settings.BACKUPS_MULTIPART_CHUNK_BYTES >> 20} MiB parts)",
                f"{s3_backup.duration_seconds or 0:.1f} s",
                f"{(s3_backup.duration_seconds or 0) / best_raw:.2f}x",
                "moto on the same 2 cores",
            ),
            ("peak RSS, 0.25 GB, local", mb(rss_small_local), "", "goal < 200 MB"),
            ("peak RSS, 0.25 GB, S3", mb(rss_small_s3), "", "goal < 200 MB"),
            (f"peak RSS, {big / GB:.2f} GB, local", mb(rss_big_local), "", "goal < 200 MB, flat"),
            (f"peak RSS, {big / GB:.2f} GB, S3", mb(rss_big_s3), "", "goal < 200 MB, flat"),
            ("raw zstd -dc | pg_restore", f"{raw_restore:.1f} s", "baseline", ""),
            (
                "drill: time to restore",
                f"{min(drill_restores):.1f} s",
                f"{min(drill_restores) / raw_restore:.2f}x",
                "",
            ),
            (
                "drill: whole (create, restore, count, drop)",
                f"{min(drill_totals):.1f} s",
                f"{min(drill_totals) / raw_restore:.2f}x",
                "",
            ),
        ]
    finally:
        drop(BENCH_DB)
        shutil.rmtree(store, ignore_errors=True)
        moto.stop()
        for policy in (local, s3):
            Restore.objects.filter(backup__policy=policy).delete()
            Backup.objects.filter(policy=policy).delete()
            services.policy_delete(policy=BackupPolicy.objects.get(pk=policy.pk))

    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':>12}  {'vs baseline':>22}  note")
    for name, value, ratio, note in rows:
        print(f"{name:<{width}}  {value:>12}  {ratio:>22}  {note}")


if __name__ == "__main__":
    main()
