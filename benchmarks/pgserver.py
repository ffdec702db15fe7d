"""A private PostgreSQL server for benchmarks: its own data folder, a unix socket, no TCP.

`PgServer` runs Debian's PostgreSQL (`/usr/lib/postgresql/<major>/bin`) from a temporary folder:
`initdb` with trust authentication for one role, `pg_ctl start` with `listen_addresses=''` and
the socket in a private folder, so nothing outside the benchmark can reach it and it cannot clash
with another server. PostgreSQL refuses to run as root: when the benchmark is root, the server
runs as `nobody` (its folders are handed to that user); clients (`pgbench`, `pg_dump`, `psql`)
connect over the socket as the role `bench`, which needs no OS user.

Durability is off (`fsync=off`, `synchronous_commit=off`, `full_page_writes=off`): the server
holds throwaway data, and the benchmark measures the backup tools, not the disk.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

ROLE = "bench"
DATABASE = "bench"


def pg_bin(major: int | None = None) -> Path:
    """The folder of PostgreSQL's server programs (the newest installed major, or `major`)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if major is not None:
        found = [p for p in found if p.split("/")[4] == str(major)]
    if not found:
        raise SystemExit(
            "PostgreSQL is not installed (apt-get install -y postgresql); "
            f"looked for /usr/lib/postgresql/{major or '*'}/bin/initdb"
        )
    return Path(found[-1]).parent


class PgServer:
    """One private server; use as a context manager (stopped and deleted on exit)."""

    def __init__(self, root: Path, major: int | None = None) -> None:
        self.bin = pg_bin(major)
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "sock"
        self.log = root / "server.log"
        self._as_user: str | None = "nobody" if os.geteuid() == 0 else None
        self._restrict_key: bool | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> PgServer:
        """initdb (when the data folder is new) and start; returns self."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self._as_user is not None:
            entry = pwd.getpwnam(self._as_user)
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            os.chmod(self.root, 0o755)
        if not (self.data / "PG_VERSION").exists():
            self._server_cmd(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    ROLE,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        options = (
            f"-k {self.socket_dir} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB "
            "-c shared_buffers=256MB"
        )
        self._server_cmd(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "start",
            ]
        )
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._server_cmd(
                [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                check=False,
            )

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- clients ------------------------------------------------------------------------------

    def client_args(self) -> list[str]:
        """Connection options for any libpq client: the private socket, the bench role."""
        return ["-h", str(self.socket_dir), "-U", ROLE]

    def dump_argv(self) -> list[str]:
        """`pg_dump` of the bench database in plain SQL (what a practice pipes to its backup).

        Since 15.14 a dump carries a random `\\restrict` key; a fixed one (where pg_dump has
        the option) makes two dumps of an unchanged database equal byte for byte, so the
        restore check can compare the stream with a dump taken beside it."""
        argv = [str(self.bin / "pg_dump"), *self.client_args()]
        if self._restrict_key is None:
            proc = subprocess.run([argv[0], "--help"], capture_output=True, text=True, check=False)
            self._restrict_key = "--restrict-key" in proc.stdout
        if self._restrict_key:
            argv.append("--restrict-key=dedupebench")
        return [*argv, DATABASE]

    def psql(self, sql: str, database: str = DATABASE) -> str:
        argv = [str(self.bin / "psql"), *self.client_args(), "-X", "-q", "-A", "-t"]
        proc = subprocess.run(
            [*argv, "-c", sql, database],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed: {sql[:80]}: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def pgbench(self, *args: str) -> None:
        proc = subprocess.run(
            [str(self.bin / "pgbench"), *self.client_args(), *args, DATABASE],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pgbench {' '.join(args)} failed: {proc.stderr.strip()[-400:]}")

    # --- internals ----------------------------------------------------------------------------

    def _server_cmd(self, argv: list[str], check: bool = True) -> None:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            user=self._as_user,
            group="nogroup" if self._as_user else None,
            extra_groups=[] if self._as_user else None,
            cwd=self.root,
        )
        if check and proc.returncode != 0:
            log = self.log.read_text()[-800:] if self.log.exists() else ""
            raise RuntimeError(
                f"{Path(argv[0]).name} failed ({proc.returncode}): "
                f"{proc.stderr.strip()[-600:]}\n{log}"
            )
