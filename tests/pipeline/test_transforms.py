"""The Beam composites on TestPipeline with small files."""

import json

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs.shared import counters, transforms
from tf_cartola.contract import features as F
from tf_cartola.contract import split
from tf_cartola.contract.manifest import PreprocessOutputError
from tf_cartola.read import csv_reader, splits

HEADER = list(F.CSV_COLUMNS)


def _line(globo_id, **overrides):
    cells = {c: "1" for c in HEADER}
    cells.update({F.ID_KEY: str(globo_id), "pixels": "1920x1080"})
    cells.update(overrides)
    return ",".join(cells[c] for c in HEADER)


def _ids(batch):
    return batch.column(F.ID_KEY).flatten().to_pylist()


def test_read_and_split_routes_rows_by_id_hash_and_sets_bad_rows_aside(tmp_path):
    ids = list(range(100, 130))
    path = tmp_path / "a.csv"
    lines = (
        [",".join(HEADER)] + [_line(i) for i in ids] + [_line(7, escalacoes="abc"), "1,2,3", ""]
    )
    path.write_text("\n".join(lines) + "\n")
    expected = {s: sorted(i for i in ids if split.split_of(i) == s) for s in split.SPLITS}
    assert expected["train"] and expected["eval"]
    with TestPipeline() as p:
        out = p | transforms.ReadAndSplitCsv([csv_reader.Range(str(path))])
        for which in split.SPLITS:
            ids_out = out[which] | f"Ids[{which}]" >> beam.FlatMap(_ids)
            assert_that(ids_out, equal_to(expected[which]), label=f"Check[{which}]")
        kinds = out[transforms.BAD] | beam.Map(
            lambda r: (r["kind"], r["column"], r["source"], r["line_number"])
        )
        assert_that(
            kinds,
            equal_to(
                [
                    ("FLOAT_TYPE_STRING_NOT_FLOAT", "escalacoes", str(path), 32),
                    ("WRONG_FIELD_COUNT", None, str(path), 33),
                ]
            ),
            label="CheckBad",
        )
    found = {c.key.metric.name: c.committed for c in p.result.metrics().query()["counters"]}
    assert found["rows_read"] == 32 and found["bad_rows"] == 2
    assert found[counters.bad_counter_name("FLOAT_TYPE_STRING_NOT_FLOAT", "escalacoes")] == 1


def test_read_and_split_reads_files_by_their_own_header(tmp_path):
    reordered = list(reversed(HEADER))
    paths = [tmp_path / "a.csv", tmp_path / "r.csv"]
    paths[0].write_text(",".join(HEADER) + "\n" + "\n".join(_line(i) for i in range(10)) + "\n")
    body = "\n".join(",".join(reversed(_line(i).split(","))) for i in range(10, 40))
    paths[1].write_text(",".join(reordered) + "\n" + body + "\n")
    with TestPipeline() as p:
        out = p | transforms.ReadAndSplitCsv([csv_reader.Range(str(x)) for x in paths])
        ids = (out["train"], out["eval"]) | beam.Flatten() | beam.FlatMap(_ids)
        assert_that(ids, equal_to(list(range(40))))
        assert_that(out[transforms.BAD], equal_to([]), label="NoBad")


def test_quarantine_keeps_the_whole_line_and_reason(tmp_path):
    bad = {
        "source": "a.csv",
        "line_number": 2,
        "line": "1,x",
        "kind": "K",
        "column": "c",
        "reason": "why",
    }
    with TestPipeline() as p:
        _ = p | beam.Create([bad]) | transforms.WriteQuarantine(str(tmp_path / "bad"))
    [written] = list(tmp_path.glob("bad*.jsonl"))
    assert [json.loads(line) for line in written.read_text().splitlines()] == [bad]


def test_split_written_as_parquet_reads_back_whole_and_typed(tmp_path):
    schema = csv_reader.arrow_schema([F.ID_KEY, F.PIXELS, "avg_3"])
    rows = [
        {F.ID_KEY: [i], F.PIXELS: [b"1x1"] if i % 2 else None, "avg_3": [i / 4]} for i in range(7)
    ]
    table = pa.Table.from_pylist(rows, schema)
    # A batch, tf.Transform's (batch, passthrough) pair and an empty batch.
    batches = [
        table.slice(0, 3).to_batches()[0],
        (table.slice(3).to_batches()[0], {}),
        pa.RecordBatch.from_pylist([], schema=schema),
    ]
    with TestPipeline() as p:
        written = p | beam.Create(batches) | transforms.WriteSplit(str(tmp_path / "x"))
        back = written | transforms.ReadSplit() | beam.FlatMap(lambda b: b.to_pylist())
        assert_that(back, equal_to(rows))
    got = splits.read(str(tmp_path / "x*.parquet"))
    assert splits.head(str(tmp_path / "x*.parquet"), 2).num_rows == 2
    with pytest.raises(PreprocessOutputError, match="has no column label"):
        splits.read(str(tmp_path / "x*.parquet"), [F.ID_KEY, "label"])
    assert got.schema == schema and sorted(got.to_pylist(), key=lambda r: r[F.ID_KEY]) == rows
    # The raw column as evaluation takes it: "" where missing.
    ids = csv_reader.dense_column(got, F.ID_KEY)
    pixels = csv_reader.dense_column(got, F.PIXELS, text=True)
    assert [pixels[ids == i][0] for i in range(7)] == ["1x1" if i % 2 else "" for i in range(7)]


def test_an_empty_split_is_a_valid_file_with_no_rows(tmp_path):
    with TestPipeline() as p:
        _ = p | beam.Create([]) | transforms.WriteSplit(str(tmp_path / "x"))
    [shard] = tmp_path.glob("x*.parquet")
    assert shard.stat().st_size > 0  # An object store may refuse an empty file.
    with pytest.raises(PreprocessOutputError, match="no rows"):
        splits.read(str(tmp_path / "x*.parquet"))
    (tmp_path / "y-0.parquet").write_bytes(b"not parquet")
    with pytest.raises(PreprocessOutputError, match="not a split written by"):
        splits.read(str(tmp_path / "y*.parquet"))
