"""The Beam composites on TestPipeline with in-memory rows."""

import json

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs import transforms
from tf_cartola import features as F
from tf_cartola import split

HEADER = list(F.CSV_COLUMNS)


def _line(globo_id, **overrides):
    cells = {c: "1" for c in HEADER}
    cells.update({F.ID_KEY: str(globo_id), "pixels": "1920x1080"})
    cells.update(overrides)
    return ",".join(cells[c] for c in HEADER)


def test_parse_and_split_routes_rows_by_id_hash_and_sets_bad_rows_aside():
    ids = list(range(100, 130))
    lines = [("a.csv", _line(i)) for i in ids]
    lines += [("a.csv", _line(7, escalacoes="abc")), ("a.csv", "1,2,3"), ("a.csv", "")]
    expected = {s: sorted(i for i in ids if split.split_of(i) == s) for s in split.SPLITS}
    assert expected["train"] and expected["eval"]
    with TestPipeline() as p:
        out = p | beam.Create(lines) | beam.ParDo(transforms.ParseAndSplitFn({"a.csv": HEADER})).with_outputs(
            transforms.BAD, *split.SPLITS
        )
        for which in split.SPLITS:
            ids_out = out[which] | f"Ids[{which}]" >> beam.Map(lambda r: r[F.ID_KEY])
            assert_that(ids_out, equal_to(expected[which]), label=f"Check[{which}]")
        kinds = out[transforms.BAD] | beam.Map(lambda r: (r["kind"], r["column"], r["source"]))
        assert_that(
            kinds,
            equal_to([("FLOAT_TYPE_STRING_NOT_FLOAT", "escalacoes", "a.csv"), ("WRONG_FIELD_COUNT", None, "a.csv")]),
            label="CheckBad",
        )
    counters = {c.key.metric.name: c.committed for c in p.result.metrics().query()["counters"]}
    assert counters["rows_read"] == 32 and counters["bad_rows"] == 2
    assert counters[transforms.bad_counter_name("FLOAT_TYPE_STRING_NOT_FLOAT", "escalacoes")] == 1


def test_quarantine_keeps_the_whole_line_and_reason(tmp_path):
    bad = {"source": "a.csv", "line": "1,x", "kind": "K", "column": "c", "reason": "why"}
    with TestPipeline() as p:
        _ = p | beam.Create([bad]) | transforms.WriteQuarantine(str(tmp_path / "bad"))
    [written] = list(tmp_path.glob("bad*.jsonl"))
    assert [json.loads(line) for line in written.read_text().splitlines()] == [bad]


def test_read_and_split_csv_reads_files_by_their_own_header(tmp_path):
    reordered = list(reversed(HEADER))
    path = tmp_path / "r.csv"
    lines = [_line(i) for i in range(40)]
    path.write_text(",".join(reordered) + "\n" + "\n".join(",".join(reversed(l.split(","))) for l in lines) + "\n")
    with TestPipeline() as p:
        out = p | transforms.ReadAndSplitCsv(str(path), {str(path): reordered})
        total = (out["train"], out["eval"]) | beam.Flatten() | beam.combiners.Count.Globally()
        assert_that(total, equal_to([40]))
        assert_that(out[transforms.BAD], equal_to([]), label="NoBad")
