"""Where a scoring run's ranked rows (campaign.Scored) go: a CSV file, or a scores table
(tf_cartola.write.postgres.ScoresTable). Both scoring commands write through these rows' own
formats (campaign.Scored.csv_lines and table_rows), so a score reads the same whichever wrote it.
"""

import logging
import secrets
import typing

from tf_cartola.common import files
from tf_cartola.contract import features as F
from tf_cartola.evaluate import campaign

log = logging.getLogger(__name__)

MadeBy = typing.Tuple[str, typing.Optional[int], str]  # (model_name, model_version, run_id)


def csv_made_by(made_by: MadeBy) -> str:
    """The model and run as the middle of a score's CSV line: "name,version,run_id"."""
    name, version, run_id = made_by
    return f"{name},{'' if version is None else version},{run_id}"


def csv_header() -> str:
    """A scores CSV's header line (F.SCORE_COLUMNS), without its newline."""
    return ",".join(F.SCORE_COLUMNS)


class CsvScores:
    """Score rows in a temporary file beside the output (local or an object store), moved over
    the output once complete.
    """

    def __init__(self, out_path: str, made_by: MadeBy):
        self.out = out_path
        self._part_path = f"{out_path}.{secrets.token_hex(6)}.part"
        self._part = files.open_file(self._part_path, "w")
        self._part.write(csv_header() + "\n")
        self._made_by = csv_made_by(made_by)

    def write(self, scored: campaign.Scored) -> None:
        """Writes ranked rows to the temporary file."""
        if len(scored.ids):
            self._part.write(scored.csv_lines(self._made_by) + "\n")

    def close(self, complete: bool) -> None:
        """Moves the file over the output when `complete`, else deletes it."""
        self._part.close()
        if complete:
            files.replace(self._part_path, self.out)
        else:
            files.remove(self._part_path)  # Never leave a half-written result behind.


class TableScores:
    """Upserts ranked rows into a scores table, `batch_size` rows per transaction: a crash leaves
    whole batches.
    """

    def __init__(self, url: str, table: str, made_by: MadeBy, batch_size: int = 500):
        from tf_cartola.read import postgres
        from tf_cartola.write import postgres as sink

        self.out = f"{postgres.masked(url)} table {table}"
        self._table = sink.ScoresTable(url, table)
        self._made_by, self._batch_size = made_by, batch_size

    def write(self, scored: campaign.Scored) -> None:
        """Upserts ranked rows, a transaction per `batch_size` rows."""
        rows_ = scored.table_rows(*self._made_by)
        for start in range(0, len(rows_), self._batch_size):
            self._table.upsert(rows_[start : start + self._batch_size])

    def close(self, complete: bool = True) -> None:
        """Closes the connection (each batch is committed already)."""
        self._table.close()


def clear_run(url: str, table: str, made_by: MadeBy) -> int:
    """Deletes the run's earlier rows of this model from a scores table, before the run writes
    them: a rerun replaces its rows, never adds to them. Returns how many were deleted.
    """
    from tf_cartola.write import postgres as sink

    name, _, run_id = made_by
    scores = sink.ScoresTable(url, table)
    try:
        gone = scores.clear_run(name, run_id)
    finally:
        scores.close()
    if gone:
        log.info("deleted run %s's %d earlier rows of %s from %s", run_id, gone, name, table)
    return gone
