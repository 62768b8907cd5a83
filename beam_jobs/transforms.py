"""The Beam composites of the preprocessing job, each testable on its own with TestPipeline."""

import json
import typing

import apache_beam as beam
from apache_beam.metrics import Metrics

from tf_cartola import rows, split

NAMESPACE = "cartola.preprocess"
BAD = "bad"


def bad_counter_name(kind: str, column: typing.Optional[str]) -> str:
    """The counter that counts bad rows of one kind and column: 'bad_rows:KIND:COLUMN'."""
    return f"bad_rows:{kind}:{column or ''}"


class ParseAndSplitFn(beam.DoFn):
    """(source, line) -> typed row, tagged by split; a malformed row goes to the BAD output, counted."""

    def __init__(self, headers: typing.Mapping[str, typing.Sequence[str]], split_ratio=(2, 1)):
        self._headers = dict(headers)
        self._split_ratio = tuple(split_ratio)
        self._rows_read = Metrics.counter(NAMESPACE, "rows_read")
        self._bad_rows = Metrics.counter(NAMESPACE, "bad_rows")
        self._split_rows = {s: Metrics.counter(NAMESPACE, f"rows_{s}") for s in split.SPLITS}

    def process(self, element):
        source, line = element
        if not line.strip():
            return []  # Blank lines (a trailing newline) are not rows.
        self._rows_read.inc()
        try:
            row = rows.parse_fields(self._headers[source], rows.split_line(line))
        except rows.BadRow as e:
            self._bad_rows.inc()
            Metrics.counter(NAMESPACE, bad_counter_name(e.kind, e.column)).inc()
            bad = {"source": source, "line": line, "kind": e.kind, "column": e.column, "reason": str(e)}
            return [beam.pvalue.TaggedOutput(BAD, bad)]
        which = split.split_of(row[rows.F.ID_KEY], self._split_ratio)
        self._split_rows[which].inc()
        return [beam.pvalue.TaggedOutput(which, row)]


class EncodeRecordBatchesFn(beam.DoFn):
    """tf.Transform's (RecordBatch, passthrough) outputs -> serialized tf.Examples."""

    def __init__(self, schema):
        self._schema = schema
        self._encoder = None

    def setup(self):
        from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

        self._encoder = RecordBatchToExamplesEncoder(self._schema)

    def process(self, element):
        record_batch, _ = element
        return self._encoder.encode(record_batch)


@beam.ptransform_fn
def ReadAndSplitCsv(pipeline, pattern: str, headers, split_ratio=(2, 1)):  # pylint: disable=invalid-name
    """Reads CSV files (header on the first line of each) into {train, eval, bad} PCollections of dicts."""
    return (
        pipeline
        | "ReadCsvLines" >> beam.io.ReadFromTextWithFilename(pattern, skip_header_lines=1)
        | "ParseAndSplitRows" >> beam.ParDo(ParseAndSplitFn(headers, split_ratio)).with_outputs(
            BAD, *split.SPLITS
        )
    )


@beam.ptransform_fn
def WriteExamples(examples, prefix: str):  # pylint: disable=invalid-name
    """Writes serialized tf.Examples as gzipped TFRecord shards `prefix-*.tfrecord.gz`."""
    return examples | "WriteTFRecord" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=".tfrecord.gz")


@beam.ptransform_fn
def WriteQuarantine(bad_rows, prefix: str):  # pylint: disable=invalid-name
    """Writes bad rows, with their source and reason, as JSON lines: nothing is lost."""
    return (
        bad_rows
        | "ToJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
        | "WriteJsonLines" >> beam.io.WriteToText(prefix, file_name_suffix=".jsonl")
    )
