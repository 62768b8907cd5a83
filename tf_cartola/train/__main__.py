"""Trains, evaluates and blesses the Cartola PRO model; pushes it when blessed.

    python -m tf_cartola.train --config configs/default.yaml [--preprocess_dir DIR]
        [--serving_dir DIR] [--model_name NAME] [--model_config_file FILE] [--run_id YYYY-MM]
        [--force]

The candidate is compared with the served version (the `stable` label of --model_config_file,
else the newest version). A run on data of an earlier month than the served version's is a
backfill: it is not trained nor pushed unless --force (recorded with the version).

Exit status: 0 pushed, nothing changed or a backfill not pushed; 1 refused (the reasons are
printed); 2 bad config or input.
"""

import sys

from tf_cartola.common import cli, files, timing
from tf_cartola.contract import config as config_lib
from tf_cartola.contract import manifest as manifest_lib
from tf_cartola.contract import months
from tf_cartola.train import metrics as metrics_lib


def metrics_table(result: dict) -> str:
    """Candidate (and baseline) metrics as a small text table."""
    base = result["baseline"]
    header = f"{'metric':<20}{'candidate':>12}" + (
        f"{'v' + str(result['baseline_version']):>12}" if base else ""
    )
    lines = [header, "-" * len(header)]
    for key in metrics_lib.REPORTED:
        value = result["metrics"][key]
        fmt = (lambda v: f"{v:>12}") if isinstance(value, int) else (lambda v: f"{v:>12.4f}")
        theirs = (fmt(base[key]) if key in base else f"{'':>12}") if base else ""
        lines.append(f"{key:<20}{fmt(value)}{theirs}")
    return "\n".join(lines)


def _parser():
    parser = cli.parser(
        "tf_cartola.train",
        __doc__,
        "0 pushed (or nothing changed, or a backfill not pushed), 1 not blessed, 2 bad config or "
        "input",
    )
    config_lib.add_flag(parser)
    parser.add_argument(
        "--preprocess_dir", help="beam_jobs.preprocess output; default from the config"
    )
    config_lib.add_serving_flags(parser)
    parser.add_argument(
        "--run_dir", help="this run's folder; default a new one under train.run_dir"
    )
    parser.add_argument(
        "--run_id",
        help="the data's month, YYYY-MM, recorded with the version (default: the month the "
        "input's file names carry; required when they carry none); data older than the served "
        "version's is not pushed",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="train and push even when a pushed version was made of the same data and config, "
        "or the data is older than the served version's (recorded)",
    )
    parser.add_argument(
        "--backtest",
        help="the served model's latest backtest.json (beam_jobs.backtest): its verdict and "
        "section go into the report",
    )
    return parser


def main(argv=None) -> int:
    """The command-line entry point: returns the exit status."""
    args = _parser().parse_args(argv)
    cli.setup_logging(args.verbose)
    from tf_cartola.train import training

    try:
        config = config_lib.with_serving_flags(config_lib.load(args.config), args)
        inputs = manifest_lib.load(args.preprocess_dir or config.preprocess.output_dir).inputs
        run_id = months.resolve(args.run_id, [i["path"] for i in inputs])
        result = training.train(
            config, args.preprocess_dir, None, args.run_dir, args.force, run_id
        )
    except (
        config_lib.ConfigError,
        manifest_lib.PreprocessOutputError,
        FileNotFoundError,
        ValueError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result.get("backfill"):
        print(
            f"backfill: not pushed: the data is of {result['run_id']}, older than the served "
            f"{result['served']}, of {result['served_run_id']} (--force pushes anyway)"
        )
        return 0
    if result.get("nothing_changed"):
        print(
            f"nothing changed: version {result['version']} ({result['version_dir']}) was made of "
            "the same data and config; not trained, nothing pushed (--force trains anyway)"
        )
        return 0
    return _reported(result, args.backtest)


def _reported(result: dict, backtest) -> int:
    """Writes a trained run's report and prints its metrics and decision: the exit status."""
    from tf_cartola.inspect import report
    from tf_cartola.train import training

    with timing.stage(result["seconds"], "report"):
        result["report"] = report.write_report(
            files.join(result["run_dir"], "report.html"),
            result["preprocess_dir"],
            result["run_dir"],
            result["labels"],
            result["scores"],
            backtest=backtest,
        )
    training.record_seconds(result["run_dir"], result["seconds"])
    print(metrics_table(result))
    print(result["verdict"])
    print(f"seconds: {result['seconds']}")
    print(f"run folder: {result['run_dir']} (report: {result['report']})")
    if not result["blessed"]:
        print("NOT BLESSED, not pushed:\n  " + "\n  ".join(result["reasons"]), file=sys.stderr)
        return 1
    print(f"blessed and pushed as version {result['version']}: {result['version_dir']}")
    print(f"served: {result['served']}")
    return 0


if __name__ == "__main__":
    cli.leave(cli.run(main))
