"""A throwaway PostgreSQL server on a free loopback port, for tests and the database demo.

    with local_postgres.running("runs/pg") as server:
        server.url  # postgresql://cartola@127.0.0.1:PORT/cartola (the password is in server.env)

`initdb` and `pg_ctl` come from the machine's PostgreSQL (Debian's `postgresql`
package; `make test` and `make demo-db` install it where missing). They refuse to run
as root, so as root they run as the `postgres` user. Over TCP the role `cartola` signs in
with a password (scram-sha-256), which clients take from PGPASSWORD (`server.env`), as
in production; the local socket trusts the superuser, for setup.
"""

import contextlib
import dataclasses
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import typing

from tf_cartola.common import loopback

ROLE = DATABASE = "cartola"


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or (
        [shutil.which(name)] if shutil.which(name) else []
    )
    if not found:
        raise PostgresNotFound(
            f"{name} not found: install Debian's postgresql package (make test does)"
        )
    return found[-1]


@dataclasses.dataclass
class Server:
    """A running server: `url` for the password role, `env` holding PGPASSWORD, `admin` the socket
    DSN.
    """

    directory: str
    port: int
    password: str

    @property
    def url(self) -> str:
        """postgresql:// URL of the server as the test role (no password in it)."""
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def env(self) -> typing.Dict[str, str]:
        """Environment variables that let libpq clients log in (PGPASSWORD)."""
        return {"PGPASSWORD": self.password}

    @property
    def admin(self) -> str:
        """The superuser's connection string."""
        return f"host={self.directory} port={self.port} user=postgres dbname=postgres"


def _run(args: typing.Sequence[str], as_postgres: bool) -> None:
    command = ["runuser", "-u", "postgres", "--", *args] if as_postgres else list(args)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(
            f"{' '.join(args[:2])} failed: {done.stderr.strip() or done.stdout.strip()}"
        )


@contextlib.contextmanager
def running(parent: typing.Optional[str] = None) -> typing.Iterator[Server]:
    """Creates a cluster in a new folder under `parent` (default: the temp dir), starts it, creates
    the `cartola` role and database, yields the Server, then stops it and removes the folder.
    """
    import psycopg

    as_postgres = os.geteuid() == 0
    directory = tempfile.mkdtemp(prefix="pg-", dir=parent)
    if as_postgres:
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
    data = os.path.join(directory, "data")
    server = Server(directory, loopback.free_port(), secrets.token_urlsafe(16))
    try:
        _run(
            [
                _binary("initdb"),
                "-D",
                data,
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            as_postgres,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={server.port} -c "
            f"unix_socket_directories={directory} "
            "-c fsync=off -c synchronous_commit=off"
        )
        _run(
            [
                _binary("pg_ctl"),
                "-D",
                data,
                "-o",
                options,
                "-l",
                os.path.join(directory, "log"),
                "-w",
                "start",
            ],
            as_postgres,
        )
        try:
            with psycopg.connect(server.admin, autocommit=True) as conn:
                conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{server.password}'")
                conn.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
            yield server
        finally:
            _run([_binary("pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"], as_postgres)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
