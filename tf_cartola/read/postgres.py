"""PostgreSQL as a source of users and a sink of scores (psycopg 3 on libpq).

Reading. A table or a query is read in ranges of GLOBO_ID ("partitions"), each over its
own connection with `COPY (SELECT ... ORDER BY GLOBO_ID) TO STDOUT (FORMAT csv)`: the
server renders each value from its column type as text and streams it in blocks, which
`csv_reader` types by the contract exactly as it types a CSV file. So a NULL is a missing
cell, and a value that breaks the contract (text where a number belongs, in a column of
type text; a label outside {0, 1}) is quarantined with the reason a CSV row would get.
Rows whose GLOBO_ID is NULL go with the first partition (and are set aside there).
Column names match the contract's case-insensitively (PostgreSQL folds unquoted names
to lower case).

Consistency. The launcher opens a REPEATABLE READ transaction, exports its snapshot
(`pg_export_snapshot()`) and keeps it open while the job runs; every partition's
transaction imports it (`SET TRANSACTION SNAPSHOT`), so all partitions, the row count
and the fingerprint see one state of the database, however long the job takes and
whatever is written meanwhile.

Credentials. The password comes from PGPASSWORD or ~/.pgpass (libpq reads both); one
written in the URL works too, but every URL that is shown (logs, manifests, errors,
quarantine records) is `masked`. TLS options pass through as URL parameters
(`?sslmode=verify-full&sslrootcert=...`).
"""

import contextlib
import dataclasses
import io
import logging
import re
import typing
import urllib.parse

from tf_cartola.contract import features as F
from tf_cartola.contract import rows
from tf_cartola.read import csv_reader

log = logging.getLogger(__name__)

SCHEMES = ("postgresql://", "postgres://")


def is_database(location: str) -> bool:
    """Whether an input or output names a PostgreSQL database."""
    return location.startswith(SCHEMES)


def masked(url: str) -> str:
    """The URL with any password replaced by ***, in the authority and in the parameters."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = re.sub(r"(?i)(^|&)password=[^&]*", r"\1password=***", parts.query)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


class DatabaseError(rows.InputError):
    """The database cannot be read as asked (connection, SQL, types); the message never holds a
    password.
    """


@contextlib.contextmanager
def errors(url: str):
    """Turns a psycopg error inside the block into a DatabaseError naming the masked URL, with no
    password in its text.
    """
    import psycopg

    try:
        yield
    except psycopg.Error as e:
        text = str(e).strip().replace(url, masked(url))
        parts = urllib.parse.urlsplit(url)
        if parts.password:
            text = text.replace(parts.password, "***")
        raise DatabaseError(f"{masked(url)}: {text}") from None


def connect(url: str, **kwargs):
    """A psycopg connection (errors as DatabaseError with the URL masked)."""
    import psycopg

    with errors(url):
        return psycopg.connect(url, **kwargs)


def _relation(table: typing.Optional[str], query: typing.Optional[str]):
    from psycopg import sql

    if bool(table) == bool(query):
        raise rows.InputError("a database input needs exactly one of --table and --query")
    if table:
        return sql.SQL("SELECT * FROM {}").format(sql.Identifier(*table.split(".")))
    return sql.SQL("SELECT * FROM ({}) AS q").format(sql.SQL(query.strip().rstrip(";")))


@dataclasses.dataclass(frozen=True)
class Partition:
    """One range of ids of one relation, read under an exported snapshot (a Beam element)."""

    url: str
    snapshot: str
    select: str  # SELECT of the relation with contract column names, as SQL text.
    low: typing.Optional[int]  # None: no bounds (an empty relation).
    high: typing.Optional[int]
    with_null_ids: bool
    path: str  # What quarantine records and logs call it (the URL masked).
    first_line: int = 1

    def __str__(self) -> str:
        return self.path


def _select_list(conn, relation, required: typing.Sequence[str]):
    """The relation's columns renamed to the contract's names (case-insensitive)."""
    from psycopg import sql

    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM ({}) AS r LIMIT 0").format(relation))
        names = [d.name for d in cur.description]
    by_lower = {c.lower(): c for c in F.CSV_COLUMNS}
    columns = [(n, by_lower[n.lower()]) for n in names if n.lower() in by_lower]
    rows.check_header([c for _, c in columns], "the relation", required)
    if F.ID_KEY not in [c for _, c in columns]:
        raise rows.InputError(f"the relation has no {F.ID_KEY} column to partition by")
    return sql.SQL("SELECT {} FROM ({}) AS r").format(
        sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(sql.Identifier(n), sql.Identifier(c)) for n, c in columns
        ),
        relation,
    )


@contextlib.contextmanager
def snapshot(
    url: str,
    table: typing.Optional[str] = None,
    query: typing.Optional[str] = None,
    partitions: int = 1,
    required: typing.Sequence[str] = F.CSV_COLUMNS,
):
    """Exports a snapshot and plans the partitions; the snapshot lives until the block ends.

    Args:
      url: a postgresql:// URL (no password: PGPASSWORD or ~/.pgpass).
      table: the table (or schema.table) to read, or None with `query`.
      query: a SELECT to read instead of a table.
      partitions: ranges of GLOBO_ID read in parallel.
      required: the columns the rows must have.

    Yields:
      (partitions, description): the Partition elements, and what the manifest records
      of the input: {"path": masked URL, "query": the SQL run, "rows", "fingerprint"}; the
      fingerprint is an MD5 over the rows' text in id order, computed by the database.

    Raises:
      DatabaseError: cannot connect, bad SQL, GLOBO_ID not a whole number.
      rows.InputError: contract columns missing.
    """
    conn = connect(url, autocommit=True)
    try:
        with errors(url):
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot_id = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            select = _select_list(conn, _relation(table, query), required)
            count, low, high, digest = _census(conn, select)
            select_text = select.as_string(conn)
        if low is not None and not isinstance(low, int):
            raise DatabaseError(
                f"{masked(url)}: {F.ID_KEY} must be a whole-number column, got "
                f"{type(low).__name__}"
            )
        planned = [
            Partition(url, snapshot_id, select_text, lo, hi, i == 0, where)
            for i, (lo, hi, where) in enumerate(
                _id_ranges(low, high, partitions, f"{masked(url)} {table or 'query'}")
            )
        ]
        log.info("%s: %d rows in %d partition(s)", masked(url), count, len(planned))
        described = {"path": masked(url), "query": select_text, "rows": count, "bytes": None}
        yield planned, {**described, "fingerprint": f"md5:{digest}"}
    finally:
        conn.close()  # Ends the transaction: the snapshot is released.


def _census(conn, select) -> tuple:
    """(rows, lowest id, highest id, MD5 over the rows' text in id order) of a SELECT, computed by
    the database.
    """
    from psycopg import sql

    return conn.execute(
        sql.SQL(
            "SELECT count(*), min({id}), max({id}), "
            "md5(coalesce(string_agg(md5(s::text), '' ORDER BY {id}, md5(s::text)), '')) "
            "FROM ({select}) AS s"
        ).format(id=sql.Identifier(F.ID_KEY), select=select)
    ).fetchone()


def _id_ranges(low, high, partitions: int, where: str) -> typing.List[tuple]:
    """(first id, id after the last, description) of each partition: `partitions` ranges of ids
    of one width from `low` to `high`, or one unbounded range when there are no rows.
    """
    if low is None:
        return [(None, None, where)]
    step = -(-(high + 1 - low) // partitions)
    return [
        (lo, min(lo + step, high + 1), f"{where} {F.ID_KEY} in [{lo}, {min(lo + step, high + 1)})")
        for lo in range(low, high + 1, step)
    ]


class _CopyStream(io.RawIOBase):
    """A COPY TO STDOUT as a readable binary stream. The server sends a message per row; they are
    gathered into blocks of about BLOCK_BYTES, so reads see few, large pieces.
    """

    BLOCK_BYTES = 1 << 20

    def __init__(self, copy):
        self._blocks = self._gather(copy)
        self._rest = memoryview(b"")

    def _gather(self, copy) -> typing.Iterator[bytes]:
        parts, size = [], 0
        for message in copy:  # A memoryview valid until the next message: copied.
            parts.append(bytes(message))
            size += len(message)
            if size >= self.BLOCK_BYTES:
                yield b"".join(parts)
                parts, size = [], 0
        if parts:
            yield b"".join(parts)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view, filled = memoryview(buffer).cast("B"), 0
        while filled < len(view):
            if not self._rest:
                block = next(self._blocks, None)
                if block is None:
                    break
                self._rest = memoryview(block)
            n = min(len(view) - filled, len(self._rest))
            view[filled : filled + n] = self._rest[:n]
            self._rest, filled = self._rest[n:], filled + n
        return filled


def read_partition(
    partition: Partition, required: typing.Sequence[str] = F.CSV_COLUMNS, byte_range=None
) -> typing.Iterator[csv_reader.Chunk]:
    """The partition's rows as typed chunks, like `csv_reader.read_csv` on a file (line numbers
    count from the COPY's header, line 1).

    Args:
      partition: one Partition of a `snapshot`.
      required: the columns the rows must have.
      byte_range: ignored, a partition is read whole (the jobs' readers share this signature).
    """
    from psycopg import sql

    del byte_range  # A partition is read whole.
    id_ = sql.Identifier(F.ID_KEY)
    if partition.low is None:
        where = sql.SQL("TRUE")
    else:
        where = sql.SQL("({id} >= {lo} AND {id} < {hi})").format(
            id=id_, lo=sql.Literal(partition.low), hi=sql.Literal(partition.high)
        )
        if partition.with_null_ids:
            where = sql.SQL("{} OR {} IS NULL").format(where, id_)
    copy_sql = sql.SQL(
        "COPY (SELECT * FROM ({select}) AS p WHERE {where} ORDER BY {id}) "
        "TO STDOUT (FORMAT csv, HEADER true)"
    ).format(select=sql.SQL(partition.select), where=where, id=id_)
    with connect(partition.url, autocommit=True) as conn, errors(partition.url):
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(
            sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(partition.snapshot))
        )
        with conn.cursor().copy(copy_sql) as copy:
            stream = io.BufferedReader(_CopyStream(copy), 1 << 20)
            yield from csv_reader.read_csv(stream, partition.path, required)
        conn.execute("COMMIT")


def read_all(
    url: str,
    table: typing.Optional[str] = None,
    query: typing.Optional[str] = None,
    required: typing.Sequence[str] = F.CSV_COLUMNS,
) -> typing.Iterator[csv_reader.Chunk]:
    """Every row of a table or query, in id order, as typed chunks (one partition).

    Args:
      url: a postgresql:// URL.
      table: the table to read, or None with `query`.
      query: a SELECT to read instead of a table.
      required: the columns the rows must have.
    """
    with snapshot(url, table, query, 1, required) as (partitions, _):
        for partition in partitions:
            yield from read_partition(partition, required)


@contextlib.contextmanager
def scores_csv(url: str, table: str, run_id: str):
    """A run's rows of a scores table (ScoresTable) as a binary CSV stream with a header of
    F.SCORE_COLUMNS, in id order, valid inside the block.
    """
    from psycopg import sql

    copy_sql = sql.SQL(
        "COPY (SELECT {} FROM {} WHERE run_id = {} ORDER BY {}) "
        "TO STDOUT (FORMAT csv, HEADER true)"
    ).format(
        sql.SQL(", ").join(map(sql.Identifier, F.SCORE_COLUMNS)),
        sql.Identifier(*table.split(".")),
        sql.Literal(run_id),
        sql.Identifier(F.ID_KEY),
    )
    with connect(url, autocommit=True) as conn, errors(url), conn.cursor().copy(copy_sql) as copy:
        yield io.BufferedReader(_CopyStream(copy), 1 << 20)
