"""Scoring every user with a pushed model, as a Beam job (CLI: beam_jobs.score).

The users are read by the preprocessing job's reader (files in line ranges, or a table in
partitions; the same typing, bad rows quarantined with their reasons), only the columns the model
takes. Beam's RunInference calls the model on each typed record batch through
`RawBatchModelHandler`: the SavedModel's `predict_raw` signature fed the batch's columns as
tensors, one signature call per batch and no tf.Example encoding (bench/score.py measures it
against tfx_bsl's RunInference over serialized examples). Scores go to CSV shards and/or a database
table; the manifest records what was scored, by which model, and what was set aside.
"""

import dataclasses
import logging
import time
import typing

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference import base as inference

from beam_jobs.shared import counters as counters_lib
from beam_jobs.shared import inputs as inputs_lib
from beam_jobs.shared import outputs, transforms, workers
from tf_cartola.common import files, timing
from tf_cartola.contract import features as F
from tf_cartola.contract.signatures import PROBABILITY, RAW_SIGNATURE
from tf_cartola.evaluate import campaign
from tf_cartola.export import scoring
from tf_cartola.read import csv_reader, postgres
from tf_cartola.score import batches, models, sinks
from tf_cartola.validate import baseline, scoring_checks

log = logging.getLogger(__name__)
INVALID_PREFIX = "invalid:"  # Counters invalid:KIND:column, of rows outside the model's schema.


@dataclasses.dataclass(frozen=True)
class CampaignOptions:
    """The target list a run writes (`<prefix>.targets.csv`): its size (0: none), the backtest
    whose conversion rates give its expected conversions, and a value per conversion and cost per
    contact for the list size that pays best (tf_cartola.evaluate.campaign).
    """

    targets: int = 0
    backtest: typing.Optional[str] = None
    value_per_conversion: typing.Optional[float] = None
    cost_per_contact: typing.Optional[float] = None


def batch_tensors(batch, columns: typing.Sequence[str]) -> dict:
    """A typed record batch's `columns` as the `predict_raw` tensors: numbers float32 (NaN =
    missing), `pixels` strings ("" = missing).
    """
    import tensorflow as tf

    out = {}
    for name in columns:
        values = csv_reader.dense_column(batch, name)
        out[name] = tf.constant(values, tf.string if name == F.PIXELS else tf.float32)
    return out


class RawBatchModelHandler(inference.ModelHandler):
    """RunInference's handler for a tf_cartola export: each element is a typed record batch, scored
    by one call of the `predict_raw` signature; the inference is the batch's PRO probabilities.
    """

    def __init__(self, model_path: str, columns: typing.Sequence[str]):
        super().__init__()
        self._path, self._columns = model_path, tuple(columns)

    def load_model(self):
        """Loads the pushed version (once per worker, as RunInference shares it)."""
        import tensorflow as tf

        return tf.saved_model.load(self._path)

    def run_inference(self, batch, model, inference_args=None):
        """The PRO probabilities of a record batch's typed rows, one prediction per row."""
        fn = model.signatures[RAW_SIGNATURE]
        return [
            inference.PredictionResult(
                rows, fn(**batch_tensors(rows, self._columns))[PROBABILITY].numpy()
            )
            for rows in batch
        ]

    def get_num_bytes(self, batch) -> int:
        """A batch's size in bytes, for RunInference's metrics."""
        return sum(rows.nbytes for rows in batch)

    def batch_elements_kwargs(self):
        """No batching by RunInference: the reader's record batches are the batches."""
        return {"max_batch_size": 1}  # An element is already a batch of thousands of rows.


class DecileCutsFn(beam.CombineFn):
    """The run's decile cuts (campaign.decile_cuts) from all its scored batches: the ids and
    written scores are gathered (12 bytes a row) and the cuts selected, not sorted.
    """

    def create_accumulator(self):
        """No rows yet."""
        return []

    def add_input(self, accumulator, scored: campaign.Scored):
        """Keeps a batch's written scores and ids."""
        accumulator.append((scored.micro, scored.ids))
        return accumulator

    def merge_accumulators(self, accumulators):
        """Every part of every accumulator."""
        return [part for accumulator in accumulators for part in accumulator]

    def compact(self, accumulator):
        """The parts as one pair of arrays, before they travel."""
        if len(accumulator) < 2:
            return accumulator
        micro, ids = zip(*accumulator)
        return [(np.concatenate(micro), np.concatenate(ids))]

    def extract_output(self, accumulator):
        """The cuts of the whole run."""
        [(micro, ids)] = self.compact(accumulator) or [(np.zeros(0, np.int64),) * 2]
        return campaign.decile_cuts(micro, ids)


class TopTargetsFn(beam.CombineFn):
    """The `n` highest-ranked rows of the run that a campaign may contact (campaign.targetable), as
    one Scored: each batch keeps at most `n`, so the run's list is merged from small parts.
    """

    def __init__(self, n: int):
        self._n = n

    def create_accumulator(self):
        """No targets yet."""
        return campaign.concatenate([])._replace(decile=np.zeros(0, np.int8))

    def _best(self, scored: campaign.Scored) -> campaign.Scored:
        keep = campaign.top(scored.micro, scored.ids, self._n)
        return campaign.Scored(*(column[keep] for column in scored))

    def add_input(self, accumulator, scored: campaign.Scored):
        """The best `n` of the accumulator and the batch's targetable rows."""
        mask = campaign.targetable(scored.pro_target)
        return self._best(
            campaign.concatenate([accumulator, campaign.Scored(*(c[mask] for c in scored))])
        )

    def merge_accumulators(self, accumulators):
        """The best `n` of them all."""
        return self._best(campaign.concatenate(list(accumulators)))

    def extract_output(self, accumulator):
        """The target list, unordered (write_targets orders it)."""
        return accumulator


class UpsertScoresFn(beam.DoFn):
    """Upserts each scored batch into a scores table (tf_cartola.score.sinks.TableScores)."""

    def __init__(self, url: str, table: str, made_by: sinks.MadeBy):
        self._url, self._table_name, self._made_by = url, table, made_by
        self._table = None

    def setup(self):
        """Connects to the scores table, once per worker."""
        self._table = sinks.TableScores(self._url, self._table_name, self._made_by)

    def process(self, scored: campaign.Scored):
        """Upserts one ranked batch."""
        self._table.write(scored)

    def teardown(self):
        """Closes the connection."""
        if self._table:
            self._table.close()


class _CountDeciles(beam.DoFn):
    """Counters rows_decile_D and targetable_decile_D: the run's rows, and those a campaign may
    contact, per decile.
    """

    def process(self, scored: campaign.Scored):
        targetable = campaign.targetable(scored.pro_target)
        for d, n in enumerate(np.bincount(scored.decile, minlength=11)[1:], 1):
            Metrics.counter(counters_lib.NAMESPACE, f"rows_decile_{d}").inc(int(n))
        for d, n in enumerate(np.bincount(scored.decile[targetable], minlength=11)[1:], 1):
            Metrics.counter(counters_lib.NAMESPACE, f"targetable_decile_{d}").inc(int(n))
        yield scored


class CheckRowsFn(beam.DoFn):
    """Checks each typed batch against the model's schema (tf_cartola.score.batches.Checks):
    counters `invalid:KIND:column`; the rows set aside go to BAD instead of being scored. Every
    batch's ids go to IDS, for the duplicate count.
    """

    def __init__(self, checks: batches.Checks):
        self._checks = checks
        self._set_aside_rows = Metrics.counter(counters_lib.NAMESPACE, "rows_set_aside")

    def process(self, batch):
        """Counts one typed batch's findings; yields its ids, the rows set aside and the rest."""
        checked = self._checks.apply(batch)
        for (kind, column), n in checked.counts.items():
            Metrics.counter(counters_lib.NAMESPACE, f"{INVALID_PREFIX}{kind}:{column}").inc(n)
        for record in checked.set_aside:
            yield beam.pvalue.TaggedOutput(transforms.BAD, record)
        self._set_aside_rows.inc(len(checked.set_aside))
        yield from transforms.ids_by_bucket(batches.ids(checked.batch))
        if checked.batch.num_rows:
            yield checked.batch


class _CountScored(beam.DoFn):
    def __init__(self):
        self._scored = Metrics.counter(counters_lib.NAMESPACE, "rows_scored")

    def process(self, result: inference.PredictionResult):
        self._scored.inc(len(result.inference))
        yield result


class TargetList(typing.NamedTuple):
    """A target list's size, file, the backtest its expectations use and that backtest's
    conversion rates per decile (both None without a backtest).
    """

    rows: int
    path: str
    backtest: typing.Optional[dict]
    rates: typing.Optional[np.ndarray]


@dataclasses.dataclass(frozen=True)
class Destination:
    """Where a run writes: CSV shards `<output>-NNNNN-of-NNNNN.csv` and/or a scores table of a
    database; its quarantine, manifest and target list are named after `prefix` (`output`, else
    the table).
    """

    output: typing.Optional[str]
    db: typing.Optional[str]
    table: str

    @property
    def prefix(self) -> str:
        """The output, else the table's name."""
        return self.output or self.table

    @property
    def quarantine(self) -> str:
        """The prefix of the rows set aside."""
        return f"{self.prefix}.bad"

    @property
    def manifest(self) -> str:
        """The run's manifest."""
        return f"{self.prefix}.manifest.json"

    def resolved(self) -> "Destination":
        """This destination with its CSV prefix absolute, as workers (in folders of their own)
        need it; raises ValueError when there is nowhere to write.
        """
        if not self.output and not self.db:
            raise ValueError("nowhere to write scores: give --output and/or --db")
        return dataclasses.replace(
            self, output=files.absolute(self.output) if self.output else None
        )


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run scores with, checks and writes."""

    model: models.Model
    columns: typing.Sequence[str]  # The raw columns the model takes.
    checks: batches.Checks
    destination: Destination
    run_id: str  # Kept with every score.
    targets: typing.Optional[TargetList] = None


def build_pipeline(p: beam.Pipeline, parts, read, plan: Plan) -> None:
    """Adds the steps that read, check, score, rank into deciles and write to `p`.

    Args:
      p: the pipeline.
      parts: the input's parts (file ranges or table partitions).
      read: reads one part (transforms.read_csv_range, postgres.read_partition).
      plan: the model, its checks, and where the scores and the rows set aside go.
    """
    results = _ranked(p | "ReadRows" >> transforms.ReadRows(parts, read), plan)
    destination, made_by = plan.destination, plan.model.made_by(plan.run_id)
    quarantine = transforms.WriteQuarantine(destination.quarantine)
    _ = results[transforms.BAD] | "WriteQuarantine" >> quarantine
    ranked = results["rows"]
    if destination.output:
        _ = (
            ranked
            | "ToCsvLines" >> beam.Map(campaign.Scored.csv_lines, sinks.csv_made_by(made_by))
            | "SkipEmpty" >> beam.Filter(bool)
            | "WriteScores"
            >> beam.io.WriteToText(
                destination.output, file_name_suffix=".csv", header=sinks.csv_header()
            )
        )
    if destination.db:
        upsert = UpsertScoresFn(destination.db, destination.table, made_by)
        _ = ranked | "UpsertScores" >> beam.ParDo(upsert)
    if plan.targets:
        _ = (
            ranked
            | "TopTargets" >> beam.CombineGlobally(TopTargetsFn(plan.targets.rows))
            | "WriteTargets"
            >> beam.Map(campaign.write_targets, plan.targets.path, plan.targets.rates)
        )


def _ranked(parsed, plan: Plan) -> dict:
    """The reader's rows checked, scored and ranked: {"rows": campaign.Scored batches with their
    deciles, BAD: every row set aside, the reader's and the checks'}.
    """
    checked = parsed["rows"] | "CheckRows" >> beam.ParDo(CheckRowsFn(plan.checks)).with_outputs(
        transforms.BAD, transforms.IDS, main="rows"
    )
    _ = checked[transforms.IDS] | "CountDuplicateIds" >> transforms.CountDuplicateIds()
    scored = (
        checked["rows"]
        | "RunInference"
        >> inference.RunInference(RawBatchModelHandler(plan.model.path, plan.columns))
        | "CountScored" >> beam.ParDo(_CountScored())
        | "KeepScores" >> beam.Map(lambda r: campaign.of_batch(r.example, r.inference))
    )
    # Deciles are over the whole run: its cuts first, then each batch's deciles where it is.
    cuts = scored | "DecileCuts" >> beam.CombineGlobally(DecileCutsFn())
    return {
        "rows": scored
        | "Deciles" >> beam.Map(campaign.Scored.ranked, beam.pvalue.AsSingleton(cuts))
        | "CountDeciles" >> beam.ParDo(_CountDeciles()),
        transforms.BAD: (parsed[transforms.BAD], checked[transforms.BAD])
        | "AllSetAside" >> beam.Flatten(),
    }


def _run(input_location: str, database, encoding: str, options, plan: Plan, seconds: dict):
    """Runs the plan's pipeline over the input's parts: returns (the inputs' record, the
    counters); `seconds` gets its construction's.
    """
    required = (F.ID_KEY, *plan.columns)
    with inputs_lib.open_inputs(input_location, inputs_lib.CSV, required, database) as (
        inputs,
        parts,
    ):
        log.info("reading %d part(s) of %s", len(parts), plan.checks.source)
        with beam.Pipeline(options=options) as p:
            read = transforms.part_reader(postgres.is_database(input_location), required, encoding)
            with timing.stage(seconds, "construct"):
                build_pipeline(p, parts, read, plan)
    return inputs, counters_lib.of(p.result)


def _clear_earlier(destination: Destination, made_by: sinks.MadeBy) -> None:
    """Deletes what an earlier run with the same outputs left (its shards, quarantine, manifest
    and target list, by match: a rerun with another shard count leaves nothing stale) and the
    run's rows of this model in the table: a rerun replaces, never adds.
    """
    patterns = [
        f"{destination.quarantine}-*-of-*.jsonl",
        destination.manifest,
        f"{destination.prefix}.targets.csv",
    ]
    if destination.output:
        patterns.append(f"{destination.output}-*-of-*.csv")
    deleted = outputs.delete_matching(patterns)
    if deleted:
        log.info("deleted %d file(s) of an earlier run: %s", len(deleted), deleted[:3])
    if destination.db:
        sinks.clear_run(destination.db, destination.table, made_by)


def _deciles(counters: dict) -> typing.List[dict]:
    return [
        {
            "decile": d,
            "rows": counters.get(f"rows_decile_{d}", 0),
            "targetable": counters.get(f"targetable_decile_{d}", 0),
        }
        for d in range(1, campaign.DECILES + 1)
    ]


def _target_list(options: CampaignOptions, destination: Destination):
    """The target list to write (None when none is asked for), with its backtest read once."""
    if not options.targets:
        return None
    backtest = files.read_json(options.backtest) if options.backtest else None
    rates = None if backtest is None else campaign.decile_rates(backtest)[0]
    return TargetList(options.targets, f"{destination.prefix}.targets.csv", backtest, rates)


def _campaign(counters: dict, targets: typing.Optional[TargetList], options) -> dict:
    """The manifest's rows per decile and the record of the target list (campaign.target_record,
    or None).
    """
    deciles = _deciles(counters)
    if targets is None:
        return {"deciles": deciles, "targets": None}
    with files.open_file(targets.path) as f:
        target_deciles = np.array([int(line.split(",")[2]) for line in list(f)[1:]], np.int64)
    return {
        "deciles": deciles,
        "targets": {
            "path": targets.path,
            "backtest": options.backtest,
            **campaign.target_record(
                target_deciles,
                np.array([d["targetable"] for d in deciles]),
                targets.backtest,
                options.value_per_conversion,
                options.cost_per_contact,
            ),
        },
    }


def set_aside_reasons(manifest: dict) -> typing.Dict[str, int]:
    """Rows set aside per reason: the reader's ("KIND:column") and, with --set_aside_invalid, the
    schema's ("invalid KIND:column").
    """
    invalid = manifest["invalid"] if manifest["set_aside_invalid"] else {}
    return {**manifest["bad_rows"], **{f"invalid {k}": n for k, n in invalid.items()}}


def _check_set_aside(manifest: dict, max_fraction: float) -> None:
    """Raises TooManySetAside when the run set aside more than `max_fraction` of its rows."""
    rows = manifest["rows"]
    scoring_checks.check_set_aside(
        rows["read"], rows["bad"] + rows["set_aside"], set_aside_reasons(manifest), max_fraction
    )


def _written(pattern: str) -> typing.List[str]:
    """The files a sink wrote, by name (an empty quarantine shard is no finding, and is not
    listed).
    """
    from apache_beam.io.filesystems import FileSystems

    [found] = FileSystems.match([pattern])
    return sorted(
        m.path for m in found.metadata_list if m.size_in_bytes or not pattern.endswith(".jsonl")
    )


def _made_by(plan: Plan) -> dict:
    """The manifest's model, run, columns, the schema they were checked against and whether rows
    outside it were set aside.
    """
    return {
        "model": dataclasses.asdict(plan.model),
        "run_id": plan.run_id,
        "columns": plan.columns,
        "schema": (
            files.join(plan.model.path, baseline.VERSION_DIR) if plan.checks.rules else None
        ),
        "set_aside_invalid": plan.checks.set_aside,
    }


def _rows(counters: dict) -> typing.Dict[str, int]:
    """The manifest's rows: read, scored, bad and set aside; raises RuntimeError when they do not
    add up (nothing may be lost between reading and writing).
    """
    rows = {
        name: counters.get(counter, 0)
        for name, counter in (
            ("read", "rows_read"),
            ("scored", "rows_scored"),
            ("bad", "bad_rows"),
            ("set_aside", "rows_set_aside"),
        )
    }
    if rows["scored"] + rows["bad"] + rows["set_aside"] != rows["read"]:
        raise RuntimeError(
            f"rows read {rows['read']} != scored {rows['scored']} + bad {rows['bad']} + set aside "
            f"{rows['set_aside']}"
        )
    return rows


def _findings(counters: dict) -> dict:
    """The manifest's findings: the reader's bad rows and the rows outside the schema, by
    "KIND:column", and the duplicate ids.
    """
    return {
        "bad_rows": counters_lib.bad_row_reasons(counters),
        "invalid": {
            name[len(INVALID_PREFIX) :]: n
            for name, n in sorted(counters.items())
            if name.startswith(INVALID_PREFIX) and n
        },
        "duplicate_ids": counters_lib.duplicate_ids(counters),
    }


def _outputs(destination: Destination) -> dict:
    """The manifest's outputs: the shards and quarantine written, and the table."""
    return {
        "scores": _written(f"{destination.output}-*.csv") if destination.output else None,
        "quarantine": _written(f"{destination.quarantine}*.jsonl"),
        "table": (
            f"{postgres.masked(destination.db)} {destination.table}" if destination.db else None
        ),
    }


def score(
    input_location: str,
    model: models.Model,
    options,
    run_id: str,
    destination: Destination,
    database: typing.Optional[inputs_lib.DatabaseInput] = None,
    encoding: str = "utf-8",
    set_aside_invalid: bool = False,
    max_set_aside_fraction: float = scoring_checks.MAX_SET_ASIDE_FRACTION,
    campaign_options: CampaignOptions = CampaignOptions(),
) -> dict:
    """Scores every user of the input and writes the destination's manifest.

    Args:
      input_location: CSV path or glob (any Beam filesystem), or a postgresql:// URL.
      model: the version that scores (tf_cartola.score.models.find_model).
      options: Beam pipeline options.
      run_id: the run's id, kept with every score (a table keeps one row per user, model and run).
      destination: CSV shards and/or a scores table.
      database: the table or query and partitions, for a postgresql:// input.
      encoding: a CSV input's text encoding.
      set_aside_invalid: set aside rows outside the model's schema (else scored and counted).
      max_set_aside_fraction: above this share of rows set aside the run fails, once written.
      campaign_options: the target list to write beside the scores.

    Returns:
      The manifest.

    Raises:
      rows.InputError, FileNotFoundError: the input cannot be read as the model needs it.
      ValueError: neither CSV shards nor a table to write to.
      TooManySetAside: more than `max_set_aside_fraction` of the rows were set aside.
    """
    started, destination = time.perf_counter(), destination.resolved()
    runner = workers.runner(options, [input_location, destination.output])
    checks = batches.Checks((), set_aside_invalid, inputs_lib.shown(input_location))
    seconds = {}
    with timing.stage(seconds, "prepare"):
        plan = _plan(model, run_id, destination, checks, campaign_options)
        _clear_earlier(destination, model.made_by(run_id))
    with timing.stage(seconds, "pipeline"):
        inputs, counters = _run(input_location, database, encoding, options, plan, seconds)
    manifest = {
        "input": checks.source,
        "inputs": inputs,
        **_made_by(plan),
        "rows": _rows(counters),
        **_findings(counters),
        "outputs": _outputs(destination),
        **_campaign(counters, plan.targets, campaign_options),
        "runner": {**runner, "not_reported": []},
        "seconds": {**seconds, "total": round(time.perf_counter() - started, 2)},
    }
    files.write_json(destination.manifest, manifest)
    _check_set_aside(manifest, max_set_aside_fraction)
    return manifest


def _plan(model, run_id: str, destination: Destination, checks, options: CampaignOptions) -> Plan:
    """The run's plan: the columns the model takes, the rules of its schema added to `checks`,
    and the target list.
    """
    columns = scoring.raw_inputs(model.path)
    log.info("scoring with %s version %s (%s), columns %s", *dataclasses.astuple(model), columns)
    checks = dataclasses.replace(checks, rules=models.schema_rules(model.path, columns))
    return Plan(model, columns, checks, destination, run_id, _target_list(options, destination))
