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
import functools
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
from tf_cartola.common import files
from tf_cartola.contract import features as F
from tf_cartola.contract.signatures import PROBABILITY, RAW_SIGNATURE
from tf_cartola.evaluate import campaign
from tf_cartola.export import scoring
from tf_cartola.export import served as served_lib
from tf_cartola.export import store as model_store
from tf_cartola.read import csv_reader, postgres
from tf_cartola.validate import baseline, scoring_checks
from tf_cartola.write import postgres as sink

log = logging.getLogger(__name__)
INVALID_PREFIX = "invalid:"  # Counters invalid:KIND:column, of rows outside the model's schema.


class NoModel(FileNotFoundError):
    """No model version where the job was told to look."""


@dataclasses.dataclass(frozen=True)
class Model:
    """The model version that scores: its name, number (None for an export outside a serving
    folder) and folder.
    """

    name: str
    version: typing.Optional[int]
    path: str


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


def find_model(
    serving,
    version: typing.Optional[int] = None,
    model_dir: typing.Optional[str] = None,
) -> Model:
    """The model to score with: `model_dir` as it is, else version `version`, else the served
    version (tf_cartola.export.served: the models.config's `stable` label or newest served
    version, or the newest pushed).

    Args:
      serving: the config's serving section (serving_dir, model_name, model_config_file).
      version: the version to score with (default: the served one).
      model_dir: a SavedModel folder to use instead.

    Raises:
      NoModel: no such version (or nothing served).
      ServedError: a models.config that cannot say what is served.
    """
    if model_dir:
        if not files.exists(files.join(model_dir, model_store.SAVED_MODEL_FILE)):
            raise NoModel(f"no SavedModel in {model_dir}")
        name = model_dir.rstrip("/").rsplit("/", 1)[-1]
        return Model(serving.model_name, int(name) if name.isdigit() else None, model_dir)
    base_path = files.join(serving.serving_dir, serving.model_name)
    if version is not None:
        found = model_store.versions(base_path)
        if version not in found:
            raise NoModel(
                f"no version {version} of {serving.model_name} under {serving.serving_dir} "
                f"(there are {found})"
            )
        return Model(serving.model_name, version, model_store.version_dir(base_path, version))
    served = served_lib.served(serving.serving_dir, serving.model_name, serving.model_config_file)
    if served.version is None:
        raise NoModel(served.describe())
    log.info("the served version: %s", served.describe())
    return Model(serving.model_name, served.version, served.version_dir())


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
    """Upserts each scored batch into a table (write.postgres.ScoresTable), one transaction a
    batch.
    """

    def __init__(self, url: str, table: str, model: Model, run_id: str):
        self._url, self._table_name, self._model, self._run_id = url, table, model, run_id
        self._table = None

    def setup(self):
        """Connects to the scores table, once per worker."""
        self._table = sink.ScoresTable(self._url, self._table_name)

    def process(self, scored: campaign.Scored):
        """Upserts one ranked batch, in one transaction."""
        self._table.upsert(scored.table_rows(self._model.name, self._model.version, self._run_id))

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
    """Checks each typed batch against the model's schema (tf_cartola.validate.scoring_checks):
    counters `invalid:KIND:column`; with `set_aside`, the rows that break a rule go to BAD instead
    of being scored. Every batch's ids go to IDS, for the duplicate count.
    """

    def __init__(self, rules: typing.Sequence[scoring_checks.Rule], set_aside: bool, source: str):
        self._rules, self._set_aside, self._source = list(rules), set_aside, source
        self._set_aside_rows = Metrics.counter(counters_lib.NAMESPACE, "rows_set_aside")

    def process(self, batch):
        """Counts one typed batch's findings; yields its ids and, when asked, sets rows aside."""
        import pyarrow as pa

        findings = scoring_checks.check(batch, self._rules)
        for (kind, column), n in findings.counts.items():
            Metrics.counter(counters_lib.NAMESPACE, f"{INVALID_PREFIX}{kind}:{column}").inc(n)
        if self._set_aside and findings.invalid.any():
            for record in scoring_checks.set_aside_records(
                batch, findings, self._source, F.ID_KEY
            ):
                yield beam.pvalue.TaggedOutput(transforms.BAD, record)
            self._set_aside_rows.inc(int(findings.invalid.sum()))
            batch = batch.filter(pa.array(~findings.invalid))
        yield from transforms.ids_by_bucket(
            csv_reader.dense_column(batch, F.ID_KEY).astype(np.int64)
        )
        if batch.num_rows:
            yield batch


class _CountScored(beam.DoFn):
    def __init__(self):
        self._scored = Metrics.counter(counters_lib.NAMESPACE, "rows_scored")

    def process(self, result: inference.PredictionResult):
        self._scored.inc(len(result.inference))
        yield result


class TargetList(typing.NamedTuple):
    """A target list's size, file and conversion rates per decile (None without a backtest)."""

    rows: int
    path: str
    rates: typing.Optional[np.ndarray]


def build_pipeline(
    p: beam.Pipeline,
    parts,
    model: Model,
    columns: typing.Sequence[str],
    database: bool,
    run_id: str,
    output: typing.Optional[str],
    quarantine: str,
    db: typing.Optional[str],
    table: str,
    encoding: str = "utf-8",
    rules: typing.Sequence[scoring_checks.Rule] = (),
    set_aside: bool = False,
    source: str = "",
    targets: typing.Optional[TargetList] = None,
) -> None:
    """Adds the steps that read, check (`rules`, `set_aside`; `source` names the input in set-aside
    records), score, rank into deciles and write to `p`.

    Args:
      p: the pipeline.
      parts: the input's parts (file ranges or table partitions).
      model: the version that scores.
      columns: the raw columns it takes.
      database: whether the parts are table partitions.
      run_id: the run's id, kept with every score.
      output: CSV shards' prefix, or None.
      quarantine: the prefix of the rows set aside.
      db: a postgresql:// URL to upsert the scores into, or None.
      table: the scores table.
      encoding: a CSV input's text encoding.
      rules: the checks of the model's schema.
      set_aside: set aside the rows that break a rule instead of scoring them.
      source: the input, named in set-aside records.
      targets: the target list to write, or None.
    """
    required = (F.ID_KEY, *columns)
    read = (
        functools.partial(postgres.read_partition, required=required)
        if database
        else functools.partial(transforms.read_csv_range, required=required, encoding=encoding)
    )
    parsed = p | "ReadRows" >> transforms.ReadRows(parts, read)
    checked = parsed["rows"] | "CheckRows" >> beam.ParDo(
        CheckRowsFn(rules, set_aside, source)
    ).with_outputs(transforms.BAD, transforms.IDS, main="rows")
    _ = checked[transforms.IDS] | "CountDuplicateIds" >> transforms.CountDuplicateIds()
    _ = (
        (parsed[transforms.BAD], checked[transforms.BAD])
        | "AllSetAside" >> beam.Flatten()
        | "WriteQuarantine" >> transforms.WriteQuarantine(quarantine)
    )
    scored = (
        checked["rows"]
        | "RunInference" >> inference.RunInference(RawBatchModelHandler(model.path, columns))
        | "CountScored" >> beam.ParDo(_CountScored())
        | "KeepScores" >> beam.Map(lambda r: campaign.of_batch(r.example, r.inference))
    )
    # Deciles are over the whole run: its cuts first, then each batch's deciles where it is.
    cuts = scored | "DecileCuts" >> beam.CombineGlobally(DecileCutsFn())
    ranked = (
        scored
        | "Deciles" >> beam.Map(campaign.Scored.ranked, beam.pvalue.AsSingleton(cuts))
        | "CountDeciles" >> beam.ParDo(_CountDeciles())
    )
    if output:
        made_by = f"{model.name},{'' if model.version is None else model.version},{run_id}"
        _ = (
            ranked
            | "ToCsvLines" >> beam.Map(campaign.Scored.csv_lines, made_by)
            | "SkipEmpty" >> beam.Filter(bool)
            | "WriteScores"
            >> beam.io.WriteToText(
                output, file_name_suffix=".csv", header=",".join(F.SCORE_COLUMNS)
            )
        )
    if db:
        _ = ranked | "UpsertScores" >> beam.ParDo(UpsertScoresFn(db, table, model, run_id))
    if targets:
        _ = (
            ranked
            | "TopTargets" >> beam.CombineGlobally(TopTargetsFn(targets.rows))
            | "WriteTargets" >> beam.Map(campaign.write_targets, targets.path, targets.rates)
        )


def _clear_earlier(
    output: typing.Optional[str],
    quarantine: str,
    prefix: str,
    db: typing.Optional[str],
    table: str,
    model: Model,
    run_id: str,
) -> None:
    """Deletes what an earlier run with the same outputs left (its shards, quarantine and
    manifest, by match: a rerun with another shard count leaves nothing stale) and the run's rows
    of this model in the table: a rerun replaces, never adds.
    """
    patterns = [f"{quarantine}-*-of-*.jsonl", f"{prefix}.manifest.json", f"{prefix}.targets.csv"]
    if output:
        patterns.append(f"{output}-*-of-*.csv")
    deleted = outputs.delete_matching(patterns)
    if deleted:
        log.info("deleted %d file(s) of an earlier run: %s", len(deleted), deleted[:3])
    if db:
        scores = sink.ScoresTable(db, table)
        try:
            gone = scores.clear_run(model.name, run_id)
        finally:
            scores.close()
        if gone:
            log.info(
                "deleted run %s's %d earlier rows of %s from %s", run_id, gone, model.name, table
            )


def _deciles(counters: dict) -> typing.List[dict]:
    return [
        {
            "decile": d,
            "rows": counters.get(f"rows_decile_{d}", 0),
            "targetable": counters.get(f"targetable_decile_{d}", 0),
        }
        for d in range(1, campaign.DECILES + 1)
    ]


def _targets(
    targets: typing.Optional[TargetList],
    deciles: typing.List[dict],
    backtest: typing.Optional[dict],
    options: CampaignOptions,
) -> typing.Optional[dict]:
    """The manifest's record of the target list (campaign.target_record), or None."""
    if targets is None:
        return None
    with files.open_file(targets.path) as f:
        target_deciles = np.array([int(line.split(",")[2]) for line in list(f)[1:]], np.int64)
    return {
        "path": targets.path,
        "backtest": options.backtest,
        **campaign.target_record(
            target_deciles,
            np.array([d["targetable"] for d in deciles]),
            backtest,
            options.value_per_conversion,
            options.cost_per_contact,
        ),
    }


def set_aside_reasons(manifest: dict) -> typing.Dict[str, int]:
    """Rows set aside per reason: the reader's ("KIND:column") and, with --set_aside_invalid, the
    schema's ("invalid KIND:column").
    """
    invalid = manifest["invalid"] if manifest["set_aside_invalid"] else {}
    return {**manifest["bad_rows"], **{f"invalid {k}": n for k, n in invalid.items()}}


def _written(pattern: str) -> typing.List[str]:
    """The files a sink wrote, by name (an empty quarantine shard is no finding, and is not
    listed).
    """
    from apache_beam.io.filesystems import FileSystems

    [found] = FileSystems.match([pattern])
    return sorted(
        m.path for m in found.metadata_list if m.size_in_bytes or not pattern.endswith(".jsonl")
    )


def score(
    input_location: str,
    model: Model,
    options,
    run_id: str,
    output: typing.Optional[str] = None,
    db: typing.Optional[str] = None,
    scores_table: str = "scores",
    database: typing.Optional[inputs_lib.DatabaseInput] = None,
    encoding: str = "utf-8",
    set_aside_invalid: bool = False,
    max_set_aside_fraction: float = scoring_checks.MAX_SET_ASIDE_FRACTION,
    campaign_options: CampaignOptions = CampaignOptions(),
) -> dict:
    """Scores every user of the input and writes `<prefix>.manifest.json` (prefix: `output`, else
    the table).

    Args:
      input_location: CSV path or glob (any Beam filesystem), or a postgresql:// URL.
      model: the version that scores (find_model).
      options: Beam pipeline options.
      run_id: the run's id, kept with every score (a table keeps one row per user, model and run).
      output: write CSV shards `<output>-NNNNN-of-NNNNN.csv`.
      db: upsert the scores into `scores_table` of this database (a postgresql:// URL).
      scores_table: the table scores are upserted into.
      database: the table or query and partitions, for a postgresql:// input.
      encoding: a CSV input's text encoding.
      set_aside_invalid: set aside rows outside the schema the model carries instead of scoring
        them (they are counted either way).
      max_set_aside_fraction: the share of rows that may be set aside; above it the run fails
        (its outputs and manifest are written, to be looked at).
      campaign_options: the target list to write beside the scores.

    Returns:
      The manifest.

    Raises:
      rows.InputError, FileNotFoundError: the input cannot be read as the model needs it.
      ValueError: neither `output` nor `db`.
      TooManySetAside: more than `max_set_aside_fraction` of the rows were set aside.
    """
    if not output and not db:
        raise ValueError("nowhere to write scores: give --output and/or --db")
    started = time.perf_counter()
    output = files.absolute(output) if output else None  # Workers run in folders of their own.
    prefix = output or scores_table
    quarantine = f"{prefix}.bad"
    runner = workers.runner(options, [input_location, output])
    columns = scoring.raw_inputs(model.path)
    log.info(
        "scoring with %s version %s (%s), columns %s",
        model.name,
        model.version,
        model.path,
        columns,
    )
    rules = scoring_checks.of_model(model.path, columns)
    if rules is None:
        log.warning(
            "%s carries no schema (not exported by tf_cartola.train): rows are not checked",
            model.path,
        )
    backtest = files.read_json(campaign_options.backtest) if campaign_options.backtest else None
    targets = None
    if campaign_options.targets:
        rates = None if backtest is None else campaign.decile_rates(backtest)[0]
        targets = TargetList(campaign_options.targets, f"{prefix}.targets.csv", rates)
    _clear_earlier(output, quarantine, prefix, db, scores_table, model, run_id)
    with inputs_lib.open_inputs(
        input_location, inputs_lib.CSV, (F.ID_KEY, *columns), database
    ) as (inputs, parts):
        log.info("reading %d part(s) of %s", len(parts), inputs_lib.shown(input_location))
        with beam.Pipeline(options=options) as p:
            build_pipeline(
                p,
                parts,
                model,
                columns,
                postgres.is_database(input_location),
                run_id,
                output,
                quarantine,
                db,
                scores_table,
                encoding,
                rules or (),
                set_aside_invalid,
                inputs_lib.shown(input_location),
                targets,
            )
    counters = counters_lib.of(p.result)
    deciles = _deciles(counters)
    rows = {
        "read": counters.get("rows_read", 0),
        "scored": counters.get("rows_scored", 0),
        "bad": counters.get("bad_rows", 0),
        "set_aside": counters.get("rows_set_aside", 0),
    }
    manifest = {
        "input": inputs_lib.shown(input_location),
        "inputs": inputs,
        "model": dataclasses.asdict(model),
        "run_id": run_id,
        "columns": columns,
        "rows": rows,
        "bad_rows": {
            f"{kind}:{column}": n
            for (kind, column), n in counters_lib.bad_row_counts(counters).items()
        },
        "schema": None if rules is None else files.join(model.path, baseline.VERSION_DIR),
        "invalid": {
            name[len(INVALID_PREFIX) :]: n
            for name, n in sorted(counters.items())
            if name.startswith(INVALID_PREFIX) and n
        },
        "set_aside_invalid": set_aside_invalid,
        "duplicate_ids": {
            "ids": counters.get("duplicate_ids", 0),
            "rows": counters.get("duplicate_id_rows", 0),
        },
        "outputs": {
            "scores": _written(f"{output}-*.csv") if output else None,
            "quarantine": _written(f"{quarantine}*.jsonl"),
            "table": f"{postgres.masked(db)} {scores_table}" if db else None,
        },
        "deciles": deciles,
        "targets": _targets(targets, deciles, backtest, campaign_options),
        "runner": {**runner, "not_reported": []},
        "seconds": {"total": round(time.perf_counter() - started, 2)},
    }
    files.write_json(f"{prefix}.manifest.json", manifest)
    scoring_checks.check_set_aside(
        rows["read"],
        rows["bad"] + rows["set_aside"],
        set_aside_reasons(manifest),
        max_set_aside_fraction,
    )
    if (
        rows["scored"] + rows["bad"] + rows["set_aside"] != rows["read"]
    ):  # Nothing lost between reading and writing.
        raise RuntimeError(
            f"rows read {rows['read']} != scored {rows['scored']} + bad {rows['bad']} + set aside "
            f"{rows['set_aside']}"
        )
    return manifest
