"""The Beam composites of the preprocessing job, each testable on its own with TestPipeline.

Data moves as Arrow record batches of a few tens of thousands of rows, not row by
row: Beam's per-element cost is paid per batch.
"""

import functools
import logging
import time
import typing

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_jobs.shared.counters import NAMESPACE, bad_counter_name
from tf_cartola.contract import features as F
from tf_cartola.contract import split
from tf_cartola.read import csv_reader, postgres, splits
from tf_cartola.score import batches
from tf_cartola.validate import scoring_checks

BAD = "bad"
GOOD = "good"  # Counter rows_good: the rows read without a split.
IDS = "ids"  # (id modulo ID_BUCKETS, ids): every good row's id, for the duplicate count.
ID_BUCKETS = 64
log = logging.getLogger(__name__)


def read_csv_range(
    byte_range: csv_reader.Range,
    required: typing.Sequence[str] = F.CSV_COLUMNS,
    encoding: str = "utf-8",
):
    """Typed chunks of one range of a CSV file (any Beam filesystem; compression from the file
    name).

    Args:
      byte_range: the range of the file to read.
      required: the columns the header must hold.
      encoding: the file's text encoding.
    """
    with FileSystems.open(byte_range.path) as f:
        yield from csv_reader.read_csv(
            f, byte_range.path, required, byte_range=byte_range, encoding=encoding
        )


def part_reader(
    database: bool, required: typing.Sequence[str] = F.CSV_COLUMNS, encoding: str = "utf-8"
):
    """Reads one part of an input: a table partition (postgres.read_partition) of a database, else
    a range of a CSV file (read_csv_range).
    """
    if database:
        return functools.partial(postgres.read_partition, required=required)
    return functools.partial(read_csv_range, required=required, encoding=encoding)


def read_prediction_log_file(byte_range: csv_reader.Range):
    """Typed chunks of a file of PredictionLog records."""
    from tf_cartola.read import prediction_logs

    with FileSystems.open(byte_range.path) as f:
        yield from prediction_logs.read(f, byte_range.path, byte_range)


class ReadRowsFn(beam.DoFn):
    """A part of the input (a range of a file, a partition of a table) -> typed record batches;
    malformed rows go to the BAD output, counted.

    `read` turns the element into chunks (read_csv_range, read_prediction_log_file,
    postgres.read_partition). With a split ratio the batches are tagged by split (and every id
    goes to the IDS output); without, they are the main output.
    """

    def __init__(self, read: typing.Callable = read_csv_range, split_ratio=None):
        self._read = read
        self._split_ratio = tuple(split_ratio) if split_ratio else None
        self._rows_read = Metrics.counter(NAMESPACE, "rows_read")
        self._bad_rows = Metrics.counter(NAMESPACE, "bad_rows")
        self._good_rows = {
            s: Metrics.counter(NAMESPACE, f"rows_{s}") for s in (*split.SPLITS, GOOD)
        }

    def process(self, part):
        """Reads one part of the input: typed record batches, bad rows to BAD."""
        start, read = time.perf_counter(), 0
        for chunk in self._read(part):
            read += chunk.rows
            self._rows_read.inc(chunk.rows)
            for record in chunk.bad:
                self._bad_rows.inc()
                reason = bad_counter_name(record["kind"], record["column"])
                Metrics.counter(NAMESPACE, reason).inc()
                yield beam.pvalue.TaggedOutput(BAD, record)
            yield from self._good(chunk.batch)
            log.info(
                "read %d rows of %s from line %d (%.1f s)",
                read,
                part.path,
                part.first_line,
                time.perf_counter() - start,
            )

    def _good(self, batch):
        if self._split_ratio is None:
            if batch.num_rows:
                self._good_rows[GOOD].inc(batch.num_rows)
                yield batch
            return
        ids = batch.column(F.ID_KEY).flatten().to_numpy()
        yield from ids_by_bucket(ids)
        eval_mask = split.is_eval(ids, self._split_ratio)
        for which, mask in (("train", ~eval_mask), ("eval", eval_mask)):
            part = batch.filter(mask)
            if part.num_rows:
                self._good_rows[which].inc(part.num_rows)
                yield beam.pvalue.TaggedOutput(which, part)


@beam.ptransform_fn
def ReadAndSplitCsv(
    pipeline,
    parts,
    split_ratio=split.DEFAULT_RATIO,
    read=read_csv_range,
):
    """Reads ranges of CSV files (each file by its own header) or partitions of a table into
    {train, eval} record batches, {bad} records and {ids} (see IDS). Parts are spread over the
    workers, and what follows (statistics, transform, encoding, writing) runs where its batches
    were read.

    Args:
      pipeline: the pipeline (or PBegin) applied to.
      parts: the input's parts.
      split_ratio: the train/eval split.
      read: the reader of one part (element -> typed chunks).
    """
    return (
        pipeline
        | "ListRanges" >> beam.Create(list(parts))
        | "ParseAndSplitRows"
        >> beam.ParDo(ReadRowsFn(read, split_ratio)).with_outputs(BAD, IDS, *split.SPLITS)
    )


@beam.ptransform_fn
def ReadRows(pipeline, parts: typing.Sequence, read):
    """Reads parts of the input with `read` (a picklable callable: element -> chunks) into
    {main: record batches, bad: quarantine records}.

    Args:
      pipeline: the pipeline (or PBegin) applied to.
      parts: the input's parts.
      read: the reader of one part (a picklable callable: element -> typed chunks).
    """
    return (
        pipeline
        | "ListRanges" >> beam.Create(list(parts))
        | "ParseRows" >> beam.ParDo(ReadRowsFn(read)).with_outputs(BAD, main="rows")
    )


def ids_by_bucket(ids: np.ndarray):
    """A batch's ids as IDS outputs: (id modulo ID_BUCKETS, those ids), for CountDuplicateIds."""
    buckets = ids % ID_BUCKETS
    for bucket in np.unique(buckets):
        yield beam.pvalue.TaggedOutput(IDS, (int(bucket), ids[buckets == bucket]))


class _CountDuplicatesFn(beam.DoFn):
    def __init__(self):
        self._ids = Metrics.counter(NAMESPACE, "duplicate_ids")
        self._rows = Metrics.counter(NAMESPACE, "duplicate_id_rows")

    def process(self, element):
        _, parts = element
        ids, rows_ = scoring_checks.duplicate_counts(np.concatenate(list(parts)))
        self._ids.inc(ids)
        self._rows.inc(rows_)
        return []


@beam.ptransform_fn
def CountDuplicateIds(ids_by_bucket):
    """Counts user ids that appear in more than one row (counters duplicate_ids,
    duplicate_id_rows).

    Takes the reader's IDS output: (id modulo 64, array of ids), so no row travels alone and
    the record batches themselves are not read again.
    """
    return (
        ids_by_bucket
        | "GroupByBucket" >> beam.GroupByKey()
        | "CountDuplicates" >> beam.ParDo(_CountDuplicatesFn())
    )


class _Open:
    """A shard being written: its file, and its Parquet writer once the first batch gave the
    schema.
    """

    def __init__(self, file):
        self.file, self.writer = file, None


class _ParquetSink(filebasedsink.FileBasedSink):
    """Beam's file sink (temporary files, then an atomic finalize) writing record batches as
    Parquet, each batch a row group of its own.

    The schema is the first batch's, so a split is written in whatever layout its batches have
    (the raw typed columns, tf.Transform's output). A shard with no rows is a valid Parquet file
    with no columns, never an empty file (an object store may refuse to write one).
    """

    def __init__(self, prefix: str):
        super().__init__(
            prefix,
            coder=None,
            file_name_suffix=splits.SUFFIX,
            num_shards=0,
            shard_name_template=None,
            mime_type="application/vnd.apache.parquet",
            compression_type=CompressionTypes.UNCOMPRESSED,
        )

    def open(self, temp_path):
        return _Open(super().open(temp_path))

    def write_record(self, file_handle, value):
        if not value.num_rows:
            return
        if file_handle.writer is None:
            file_handle.writer = pq.ParquetWriter(file_handle.file, value.schema)
        file_handle.writer.write_batch(value)

    def close(self, file_handle):
        if file_handle.writer is None:
            file_handle.writer = pq.ParquetWriter(file_handle.file, pa.schema([]))
        file_handle.writer.close()
        return super().close(file_handle.file)


def _record_batch(element):
    """A record batch, or tf.Transform's (record batch, passthrough) pair -> the record batch."""
    return element[0] if isinstance(element, tuple) else element


@beam.ptransform_fn
def WriteSplit(record_batches, prefix: str):
    """Writes record batches (or tf.Transform's output pairs) as Parquet shards
    `prefix-*.parquet` (tf_cartola.read.splits reads them). Returns the shards' paths, each once
    it is in place.
    """
    return (
        record_batches
        | "RecordBatches" >> beam.Map(_record_batch)
        | "WriteParquet" >> beam.io.Write(_ParquetSink(prefix))
    )


@beam.ptransform_fn
def ReadSplit(shard_paths):
    """The record batches of Parquet shards (WriteSplit's output), a row group at a time, spread
    over the workers.
    """
    return (
        shard_paths
        | "ReadParquet" >> beam.io.ReadAllFromParquetBatched()
        | "RecordBatches" >> beam.FlatMap(pa.Table.to_batches)
    )


@beam.ptransform_fn
def WriteQuarantine(bad_rows, prefix: str):
    """Writes bad rows, with their source, line and reason, as JSON lines: nothing is lost. No
    bad rows, no file: Beam's S3 filesystem cannot write an empty one (apache/beam#21369).
    """
    return (
        bad_rows
        | "ToJson" >> beam.Map(batches.quarantine_line)
        | "WriteJsonLines"
        >> beam.io.WriteToText(prefix, file_name_suffix=".jsonl", skip_if_empty=True)
    )
