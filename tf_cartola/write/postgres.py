"""PostgreSQL as a sink: a run's scores upserted one batch per transaction (`ScoresTable`), and a
CSV of users loaded into a table of the contract's columns (`load_csv`: the demo's and the
tests' source tables).
"""

import typing

from tf_cartola.common import files
from tf_cartola.contract import features as F
from tf_cartola.contract import rows
from tf_cartola.read.postgres import connect, errors


class ScoresTable:
    """Upserts (F.SCORE_COLUMNS, scored_at), one row per user, model and run, creating the table if
    missing (and adding the decile and pro_target columns to a table made before them): each
    month's run keeps its own rows, and a rerun of a run replaces them. Each batch is one
    transaction: a crash leaves whole batches, and writing a batch again replaces its rows instead
    of adding to them.

    Raises:
      rows.InputError: the table exists without a run_id column (made by an older version).
    """

    def __init__(self, url: str, table: str = "scores"):
        from psycopg import sql

        self._url = url
        self._name = sql.Identifier(*table.split("."))
        self._conn = connect(url)
        with errors(url), self._conn.transaction():
            self._conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ({id} bigint NOT NULL, pro_probability double "
                    "precision NOT NULL, model_name text NOT NULL, model_version bigint, run_id "
                    "text NOT NULL, {decile} smallint, {label} smallint, "
                    "scored_at timestamptz NOT NULL, PRIMARY KEY ({id}, model_name, run_id))"
                ).format(self._name, **self._columns())
            )
            columns = self._conn.execute(
                sql.SQL("SELECT * FROM {} LIMIT 0").format(self._name)
            ).description
            if "run_id" in [c.name for c in columns]:
                self._conn.execute(
                    sql.SQL(
                        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {decile} smallint, "
                        "ADD COLUMN IF NOT EXISTS {label} smallint"
                    ).format(self._name, **self._columns())
                )
        if "run_id" not in [c.name for c in columns]:
            self._conn.close()
            raise rows.InputError(
                f"table {table} has no run_id column (an older scores table): give "
                "--scores_table a new table, or add the column and the key (GLOBO_ID, "
                "model_name, run_id)"
            )

    @staticmethod
    def _columns() -> dict:
        from psycopg import sql

        return {
            "id": sql.Identifier(F.ID_KEY),
            "decile": sql.Identifier(F.DECILE),
            "label": sql.Identifier(F.LABEL_KEY),
        }

    def upsert(self, rows_: typing.Iterable[tuple]) -> None:
        """Writes one batch in one transaction: rows of F.SCORE_COLUMNS' values (a model_version
        None for a SavedModel outside a serving folder, a pro_target None where unknown).
        """
        from psycopg import sql

        statement = sql.SQL(
            "INSERT INTO {} ({columns}, scored_at) VALUES ({values}, now()) "
            "ON CONFLICT ({id}, model_name, run_id) DO UPDATE SET {updates}, "
            "scored_at = EXCLUDED.scored_at"
        ).format(
            self._name,
            columns=sql.SQL(", ").join(map(sql.Identifier, F.SCORE_COLUMNS)),
            values=sql.SQL(", ").join([sql.Placeholder()] * len(F.SCORE_COLUMNS)),
            id=sql.Identifier(F.ID_KEY),
            updates=sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
                for c in F.SCORE_COLUMNS
                if c not in (F.ID_KEY, "model_name", "run_id")
            ),
        )
        with errors(self._url), self._conn.transaction(), self._conn.cursor() as cur:
            cur.executemany(statement, list(rows_))

    def clear_run(self, model_name: str, run_id: str) -> int:
        """Deletes a run's rows of one model, before the run writes them again: a rerun replaces
        the run's rows whatever it covers (a partial rerun never leaves rows of an earlier version
        beside its own). Returns how many were deleted.
        """
        from psycopg import sql

        with errors(self._url), self._conn.transaction():
            return self._conn.execute(
                sql.SQL("DELETE FROM {} WHERE model_name = %s AND run_id = %s").format(self._name),
                (model_name, run_id),
            ).rowcount

    def close(self) -> None:
        """Closes the connection (every batch was committed in its own transaction)."""
        self._conn.close()


_SQL_TYPES = {"int": "bigint", "float": "double precision", "string": "text"}


def load_csv(
    url: str, password: str, table: str, csv_path: str, text_columns: typing.Sequence[str] = ()
) -> int:
    """Creates `table` with the contract's columns (typed from the contract; `text_columns` as
    text) and loads a CSV of the contract into it with COPY. Returns the rows loaded.

    Args:
      url: the server's postgresql:// URL.
      password: the role's password.
      table: the table to create.
      csv_path: a CSV of the contract.
      text_columns: columns created as text instead of their contract type.
    """
    import psycopg
    from psycopg import sql

    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(
            sql.Identifier(c),
            sql.SQL("text" if c in text_columns else _SQL_TYPES[F.column_kind(c)]),
        )
        for c in F.CSV_COLUMNS
    )
    with psycopg.connect(url, password=password) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        cur.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(table), columns))
        with (
            files.open_file(csv_path, "rb") as f,
            cur.copy(
                sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true)").format(
                    sql.Identifier(table)
                )
            ) as copy,
        ):
            for block in iter(lambda: f.read(1 << 20), b""):
                copy.write(block)
        return cur.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone()[0]
