"""A scoring run's typed batches: checked against the model's schema, their ids, the rows set
aside, and a whole run streamed through a model's client (serving.client's path; beam_jobs.score
does the same per batch in Beam).
"""

import collections
import dataclasses
import json
import time
import typing

import numpy as np

from tf_cartola.common import files
from tf_cartola.contract import features as F
from tf_cartola.evaluate import campaign
from tf_cartola.read import csv_reader
from tf_cartola.validate import scoring_checks


class Checked(typing.NamedTuple):
    """A batch after its checks: the rows to score, the rows outside the schema per (kind,
    column), and the quarantine records of the rows set aside.
    """

    batch: typing.Any  # pyarrow.RecordBatch
    counts: typing.Dict[typing.Tuple[str, str], int]
    set_aside: typing.List[dict]


@dataclasses.dataclass(frozen=True)
class Checks:
    """Scoring's schema checks: the model's rules, whether rows that break them are set aside
    (instead of scored and counted), and the input's name for their quarantine records.
    """

    rules: typing.Sequence[scoring_checks.Rule] = ()
    set_aside: bool = False
    source: str = ""

    def apply(self, batch) -> Checked:
        """Counts a typed batch's rows outside the schema and, when asked, sets them aside."""
        import pyarrow as pa

        findings = scoring_checks.check(batch, self.rules)
        if not (self.set_aside and findings.invalid.any()):
            return Checked(batch, findings.counts, [])
        records = scoring_checks.set_aside_records(batch, findings, self.source, F.ID_KEY)
        return Checked(batch.filter(pa.array(~findings.invalid)), findings.counts, records)


def ids(batch) -> np.ndarray:
    """A typed batch's user ids, int64."""
    return csv_reader.dense_column(batch, F.ID_KEY).astype(np.int64)


def quarantine_line(record: dict) -> str:
    """A row set aside as one line of a quarantine (JSON, keys sorted)."""
    return json.dumps(record, sort_keys=True)


def reasons(records: typing.Iterable[dict]) -> typing.Dict[str, int]:
    """Rows set aside per "KIND:column"."""
    return dict(collections.Counter(f"{r['kind']}:{r['column'] or ''}" for r in records))


def write_quarantine(path: str, records: typing.Sequence[dict]) -> typing.Optional[str]:
    """Writes the rows set aside to `path` and returns it; with none, removes a stale file there
    (an earlier run's would mislead) and returns None.
    """
    if not records:
        files.remove(path)
        return None
    with files.open_file(path, "w") as f:
        f.writelines(quarantine_line(record) + "\n" for record in records)
    return path


class _Run:
    """A streamed run: scores chunk by chunk through a client, and keeps what it has read, scored,
    set aside and found outside the schema.
    """

    def __init__(self, client, checks: Checks, batch_size: int, version, bar):
        self._client, self._checks, self._batch_size = client, checks, batch_size
        self._version, self._bar = version, bar
        self.read, self.scored, self.bad = 0, 0, []
        self.invalid = collections.Counter()

    def _advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def chunk(self, chunk) -> campaign.Scored:
        """One chunk's rows checked and scored, request by request."""
        self.read += chunk.rows
        checked = self._checks.apply(chunk.batch)
        self.bad += chunk.bad + checked.set_aside
        self.invalid.update(checked.counts)
        self._advance(len(chunk.bad) + len(checked.set_aside))
        records = csv_reader.to_records(checked.batch)
        probabilities = []
        for i in range(0, len(records), self._batch_size):
            requested = records[i : i + self._batch_size]
            probabilities.extend(self._client.score(requested, version=self._version))
            self.scored += len(requested)
            self._advance(len(requested))
        return campaign.of_batch(checked.batch, probabilities)


def stream(
    client,
    chunks,
    sink,
    quarantine: str,
    checks: Checks = Checks(),
    batch_size: int = 500,
    version=None,
    bar=None,
) -> dict:
    """Scores typed chunks through `client.score` in requests of `batch_size` rows, then ranks
    the run into deciles (campaign: over the whole run, so nothing is written before every row is
    scored) and writes it to `sink`.

    Args:
      client: anything with `score(records, version=...)` -> probabilities (serving's REST, gRPC
        and in-process clients).
      chunks: typed chunks of users (csv_reader.read_csv, postgres.read_all).
      sink: a sinks.CsvScores or sinks.TableScores; closed as complete only when every row is
        scored.
      quarantine: where the rows set aside go (write_quarantine).
      checks: the model's schema checks.
      batch_size: rows per request.
      version: the model version every request names (None: the server's choice).
      bar: a tqdm progress bar to advance by rows, or None.

    Returns:
      {"read": n, "scored": n, "bad": n, "reasons": {"KIND:column": rows set aside},
      "invalid": {"KIND:column": rows}, "duplicate_ids": {"ids": n, "rows": n}, "out": what was
      written, "quarantine": path or None, "seconds": s}; `bad` counts rows set aside for either
      reason, and read = scored + bad.

    Raises:
      rows.InputError, FileNotFoundError: the users cannot be read as the model needs them.
      Exceptions of the client: the server failed or is unreachable.
    """
    start, complete = time.perf_counter(), False
    run = _Run(client, checks, batch_size, version, bar)
    try:
        scored = campaign.concatenate([run.chunk(chunk) for chunk in chunks])
        sink.write(scored.ranked(campaign.decile_cuts(scored.micro, scored.ids)))
        complete = True
    finally:
        sink.close(complete)
    duplicate_ids, duplicate_rows = scoring_checks.duplicate_counts(scored.ids)
    return {
        "read": run.read,
        "scored": run.scored,
        "bad": len(run.bad),
        "reasons": reasons(run.bad),
        "invalid": {f"{kind}:{column}": n for (kind, column), n in sorted(run.invalid.items())},
        "duplicate_ids": {"ids": duplicate_ids, "rows": duplicate_rows},
        "out": sink.out,
        "quarantine": write_quarantine(quarantine, run.bad),
        "seconds": round(time.perf_counter() - start, 2),
    }
