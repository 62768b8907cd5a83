"""Last month's scores against this month's labels, as a Beam job (CLI: beam_jobs.backtest).

The scores (a score run's CSV shards, serving.client's CSV, or a run's rows of a scores table) are
read as columns; the labels are the next month's input, read by the preprocessing job's reader (bad
rows counted and set aside to `<output_dir>/labels.bad-*.jsonl`). Both sides are keyed by GLOBO_ID
modulo ID_BUCKETS, a batch's rows of one bucket travelling as one element, and joined per bucket
(tf_cartola.evaluate.backtest.join); the joined columns and the counts are gathered once for the
findings (backtest.summarize). Writes `<output_dir>/backtest.json` and `backtest.html`.
"""

import dataclasses
import logging
import time
import typing

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from beam_jobs.shared import counters as counters_lib
from beam_jobs.shared import inputs as inputs_lib
from beam_jobs.shared import outputs, transforms, workers
from tf_cartola.common import files
from tf_cartola.contract import features as F
from tf_cartola.contract import rows as rows_lib
from tf_cartola.evaluate import backtest as backtest_lib
from tf_cartola.evaluate import campaign
from tf_cartola.export import store as model_store
from tf_cartola.read import csv_reader, postgres
from tf_cartola.read import scores as scores_reader

log = logging.getLogger(__name__)
ID_BUCKETS = 64
SCORES, LABELS = "scores", "labels"
RECORD, PAGE = "backtest.json", "backtest.html"


class NoScores(LookupError):
    """No scores where the job was told to look: nothing to backtest (yet)."""


@dataclasses.dataclass(frozen=True)
class Scores:
    """Where a run's scores are: CSV files (a prefix of shards, a path or a glob), or a run's rows
    of a scores table (`location` a postgresql:// URL).
    """

    location: str
    table: str = "scores"
    run_id: str = ""

    def parts(self) -> typing.List[typing.Union[str, "Scores"]]:
        """The files (or the table run) to read, each one element.

        Raises:
          NoScores: no file matches, as a path, a glob or a prefix of shards.
        """
        if postgres.is_database(self.location):
            if not self.run_id:
                raise rows_lib.InputError("scores in a database need the run's id (--run_id)")
            return [self]
        location = files.absolute(self.location)
        for pattern in (location, f"{location}-*-of-*.csv"):
            found = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
            if found:
                return found
        raise NoScores(f"no scores match {self.location!r} (a path, glob or prefix)")

    def shown(self) -> str:
        """The scores as the record shows them (a database URL without its password)."""
        if postgres.is_database(self.location):
            return f"{postgres.masked(self.location)} table {self.table} run {self.run_id}"
        return self.location


def _read_scores(part) -> typing.Iterator:
    """A part of the scores (a file, or a table run) as record batches."""
    if isinstance(part, Scores):
        with postgres.scores_csv(part.location, part.table, part.run_id) as stream:
            yield from scores_reader.read_scores(stream, part.shown())
        return
    with FileSystems.open(part) as f:
        yield from scores_reader.read_scores(f, part)


class ReadScoresFn(beam.DoFn):
    """A part of the scores -> campaign.Scored batches; each batch's (model, version, run) goes to
    MADE_BY.
    """

    MADE_BY = "made_by"

    def process(self, part):
        """Reads one part."""
        for batch in _read_scores(part):
            if not batch.num_rows:
                continue
            made_by = {
                (name, version, run)
                for name, version, run in zip(
                    batch.column("model_name").to_pylist(),
                    batch.column("model_version").to_pylist(),
                    batch.column("run_id").to_pylist(),
                )
            }
            for triple in made_by:
                yield beam.pvalue.TaggedOutput(self.MADE_BY, triple)
            # Narrow types: at 10M rows both months are held at once, grouped by bucket.
            yield campaign.Scored(
                batch.column(F.ID_KEY).to_numpy(),
                campaign.written(batch.column("pro_probability").to_numpy()).astype(np.int32),
                batch.column(F.LABEL_KEY).to_numpy(zero_copy_only=False).astype(np.float32),
                batch.column(F.DECILE).to_numpy(zero_copy_only=False).astype(np.int8),
            )


def _scores_by_bucket(scored: campaign.Scored):
    buckets = scored.ids % ID_BUCKETS
    for bucket in np.unique(buckets):
        mask = buckets == bucket
        yield int(bucket), (SCORES, campaign.Scored(*(column[mask] for column in scored)))


def _labels_by_bucket(batch):
    ids = csv_reader.dense_column(batch, F.ID_KEY).astype(np.int64)
    labels = csv_reader.dense_column(batch, F.LABEL_KEY).astype(np.int8)
    buckets = ids % ID_BUCKETS
    for bucket in np.unique(buckets):
        mask = buckets == bucket
        yield int(bucket), (LABELS, (ids[mask], labels[mask]))


def _join_bucket(element):
    """One bucket's scores and labels joined: (counts, Joined)."""
    _, parts = element
    scored = campaign.concatenate([p for side, p in parts if side == SCORES])
    if scored.decile is None:
        scored = scored._replace(decile=np.zeros(0, np.int8))
    labelled = [p for side, p in parts if side == LABELS]
    ids = np.concatenate([i for i, _ in labelled]) if labelled else np.zeros(0, np.int64)
    labels = np.concatenate([y for _, y in labelled]) if labelled else np.zeros(0, np.int8)
    return backtest_lib.join(scored, ids, labels)


class GatherFn(beam.CombineFn):
    """Everything the findings need, in one place: the join's counts summed, the joined users and
    the scores of both runs (as written scores) concatenated.
    """

    def create_accumulator(self):
        """Nothing gathered yet."""
        return {"counts": {}, "joined": [], "current": [], "previous": []}

    def add_input(self, accumulator, element):
        """Adds a (kind, value): ("joined", (counts, Joined)), or a run's written scores."""
        kind, value = element
        if kind == "joined":
            counts, joined = value
            for name, n in counts.items():
                accumulator["counts"][name] = accumulator["counts"].get(name, 0) + n
            accumulator["joined"].append(joined)
        else:
            accumulator[kind].append(value)
        return accumulator

    def merge_accumulators(self, accumulators):
        """Sums the counts and lists every part."""
        out = self.create_accumulator()
        for accumulator in accumulators:
            for name, n in accumulator["counts"].items():
                out["counts"][name] = out["counts"].get(name, 0) + n
            for kind in ("joined", "current", "previous"):
                out[kind].extend(accumulator[kind])
        return out

    def extract_output(self, accumulator):
        """Everything gathered."""
        return accumulator


def _findings(gathered: dict, cfg, with_previous: bool) -> dict:
    def micro(parts):
        return np.concatenate(parts) if parts else np.zeros(0, np.int32)

    return backtest_lib.summarize(
        gathered["counts"],
        backtest_lib.concatenate(gathered["joined"]),
        micro(gathered["current"]),
        micro(gathered["previous"]) if with_previous else None,
        cfg,
    )


def build_pipeline(p, scores: Scores, label_parts, read_labels, previous, cfg, output_dir: str):
    """Adds the steps that read both months, join them and write the findings' draft to `p`."""
    scored = (
        p
        | "ListScores" >> beam.Create(scores.parts())
        | "ReadScores"
        >> beam.ParDo(ReadScoresFn()).with_outputs(ReadScoresFn.MADE_BY, main="rows")
    )
    labels = p | "ReadLabels" >> transforms.ReadRows(label_parts, read_labels)
    _ = labels[transforms.BAD] | "WriteQuarantine" >> transforms.WriteQuarantine(
        files.join(output_dir, "labels.bad")
    )
    joined = (
        (
            scored["rows"] | "ScoresByBucket" >> beam.FlatMap(_scores_by_bucket),
            labels["rows"] | "LabelsByBucket" >> beam.FlatMap(_labels_by_bucket),
        )
        | "BothMonths" >> beam.Flatten()
        | "GroupByBucket" >> beam.GroupByKey()
        | "Join" >> beam.Map(_join_bucket)
    )
    gathered = [
        joined | "TagJoined" >> beam.Map(lambda j: ("joined", j)),
        scored["rows"] | "TagScores" >> beam.Map(lambda s: ("current", s.micro)),
    ]
    if previous is not None:
        earlier = (
            p
            | "ListPrevious" >> beam.Create(previous.parts())
            | "ReadPrevious"
            >> beam.ParDo(ReadScoresFn()).with_outputs(ReadScoresFn.MADE_BY, main="rows")
        )
        gathered.append(
            earlier["rows"] | "TagPrevious" >> beam.Map(lambda s: ("previous", s.micro))
        )
    made_by = scored[ReadScoresFn.MADE_BY] | "DistinctRuns" >> beam.Distinct()
    _ = (
        gathered
        | "Everything" >> beam.Flatten()
        | "Gather" >> beam.CombineGlobally(GatherFn())
        | "Findings" >> beam.Map(_findings, cfg, previous is not None)
        | "WithRuns"
        >> beam.Map(
            lambda found, runs: {**found, "runs": sorted(runs, key=str)},
            beam.pvalue.AsList(made_by),
        )
        | "WriteDraft" >> beam.Map(lambda found: files.write_json(_draft(output_dir), found))
    )


def _draft(output_dir: str) -> str:
    return files.join(output_dir, ".backtest.draft.json")


def _model_record(
    runs: typing.List[tuple], serving
) -> typing.Tuple[dict, str, typing.Optional[float]]:
    """(the model, the run id, the KS the model had at training) of the scores' one run.

    Raises:
      NoScores: no rows (a table without that run).
      rows.InputError: the scores hold several runs or models.
    """
    if not runs:
        raise NoScores("no scores of that run: nothing to backtest")
    if len(runs) != 1:
        shown = ", ".join(f"{n} v{v} run {r}" for n, v, r in runs[:5]) or "none"
        raise rows_lib.InputError(
            f"the scores must be one run of one model; they hold {len(runs)}: {shown}"
        )
    [(name, version, run_id)] = runs
    training_ks = None
    if version is not None:
        metrics_file = files.join(
            model_store.version_dir(files.join(serving.serving_dir, name), version), "metrics.json"
        )
        if files.exists(metrics_file):
            training_ks = files.read_json(metrics_file).get("ks")
        else:
            log.warning("no %s: the KS the model had at training is not known", metrics_file)
    return {"name": name, "version": version}, run_id, training_ks


def backtest(
    scores: Scores,
    labels_location: str,
    output_dir: str,
    options,
    cfg,
    previous: typing.Optional[Scores] = None,
    database: typing.Optional[inputs_lib.DatabaseInput] = None,
    encoding: str = "utf-8",
) -> dict:
    """Backtests one run's scores against the next month's labels; writes backtest.json and
    backtest.html in `output_dir` and returns the record.

    Args:
      scores: the run's scores.
      labels_location: the next month's input: CSV path or glob, or a postgresql:// URL.
      output_dir: where the record, its page and the labels set aside go.
      options: Beam pipeline options.
      cfg: the whole config (serving: where the model's training metrics are; blessing, evaluate,
        preprocess: see backtest.summarize).
      previous: the run before's scores, for the score drift (None: none).
      database: the table or query and partitions of a postgresql:// labels input.
      encoding: a CSV labels input's text encoding.

    Raises:
      NoScores: no scores where `scores` points.
      rows.InputError, FileNotFoundError: an input cannot be read as the backtest needs it.
    """
    started = time.perf_counter()
    output_dir = files.absolute(output_dir)
    runner = workers.runner(options, [labels_location, scores.location, output_dir])
    deleted = outputs.delete_matching(
        [files.join(output_dir, name) for name in (RECORD, PAGE, "labels.bad-*-of-*.jsonl")]
    )
    if deleted:
        log.info("deleted %d file(s) of an earlier backtest", len(deleted))
    required = (F.ID_KEY, F.LABEL_KEY)
    read = transforms.part_reader(postgres.is_database(labels_location), required, encoding)
    with inputs_lib.open_inputs(labels_location, inputs_lib.CSV, required, database) as opened:
        inputs, parts = opened
        with beam.Pipeline(options=options) as p:
            build_pipeline(p, scores, parts, read, previous, cfg, output_dir)
    counters = counters_lib.of(p.result)
    found = files.read_json(_draft(output_dir))
    files.remove(_draft(output_dir))
    model, run_id, training_ks = _model_record([tuple(r) for r in found.pop("runs")], cfg.serving)
    record = {
        "model": model,
        "run_id": run_id,
        "training_ks": training_ks,
        **found,
        "scores": scores.shown(),
        "previous_scores": previous.shown() if previous else None,
        "labels": _labels_record(inputs, counters),
        "runner": runner,
        "seconds": round(time.perf_counter() - started, 2),
    }
    _write(output_dir, record)
    return record


def _labels_record(inputs: list, counters: dict) -> dict:
    """The record's labels input: what was read, and what was set aside and why."""
    return {
        "inputs": inputs,
        "read": counters.get("rows_read", 0),
        "set_aside": counters.get("bad_rows", 0),
        "reasons": counters_lib.bad_row_reasons(counters),
    }


def _write(output_dir: str, record: dict) -> None:
    """The backtest's record, and its page."""
    from tf_cartola.inspect import report

    files.write_json(files.join(output_dir, RECORD), record)
    with files.open_file(files.join(output_dir, PAGE), "w") as f:
        f.write(report.backtest_page(record))
