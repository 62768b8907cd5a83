"""Lists the pushed versions of a model: metrics, what each was made of, its blessing decision and
date.

    python -m tf_cartola.inspect.versions --config configs/default.yaml [--serving_dir DIR]
        [--model_name NAME] [--model_config_file FILE] [--json]

Marks the served version (tf_cartola.export.served: the `stable` label of --model_config_file,
else the newest) and the labels of each version.

Exit status: 0 listed (an empty list says so), 2 bad config or models.config.
"""

import json
import sys
import typing

from tf_cartola.common import cli, files
from tf_cartola.contract import config as config_lib


def describe(base_path: str, served=None) -> typing.List[dict]:
    """One record per version folder under a model base path, oldest first.

    Args:
      base_path: the model's folder of versions.
      served: what is served (`tf_cartola.export.served.Served`), or None: nothing is marked.
    """
    from tf_cartola.export import store as model_store
    from tf_cartola.train import training

    decisions = {}
    log_path = f"{base_path.rstrip('/')}.decisions.jsonl"
    if files.exists(log_path):
        with files.open_file(log_path) as f:
            for line in f:
                record = json.loads(line)
                if record.get("version") is not None:
                    decisions[record["version"]] = record
    out = []
    for version in model_store.versions(base_path):
        version_dir = model_store.version_dir(base_path, version)
        metrics_path = files.join(version_dir, "metrics.json")
        metrics = files.read_json(metrics_path) if files.exists(metrics_path) else {}
        made_of = training.read_provenance(version_dir) or {}
        decision = decisions.get(version, {})
        out.append(
            {
                "version": version,
                "path": version_dir,
                **{k: metrics.get(k) for k in ("ks", "auc", "precision", "recall")},
                "fingerprint": made_of.get("fingerprint"),
                "trained_at": made_of.get("trained_at"),
                "pushed_at": decision.get("time"),
                "blessed": decision.get("blessed", True),
                "baseline_version": decision.get("baseline_version"),
                "run_id": made_of.get("run_id"),
                "served": bool(served) and version == served.version,
                "serving": bool(served) and version in served.versions,
                "labels": sorted(
                    k for k, v in (served.labels if served else {}).items() if v == version
                ),
            }
        )
    return out


def _serving(record: dict) -> str:
    """`SERVED` for the served version, `yes` for another the policy serves, with its labels."""
    state = "SERVED" if record["served"] else "yes" if record["serving"] else "-"
    return state + (f" ({','.join(record['labels'])})" if record["labels"] else "")


def table(records: typing.Sequence[dict]) -> str:
    """The records as aligned text."""
    header = (
        f"{'version':>7}  {'ks':>6}  {'auc':>6}  {'prec.':>6}  {'recall':>6}  "
        f"{'data+config':<12}  {'decision':<22}  {'month':<7}  {'served':<16}  pushed at"
    )
    lines = [header, "-" * len(header)]
    for r in records:

        def number(key):
            return f"{r[key]:>6.4f}" if r[key] is not None else f"{'?':>6}"

        decision = "blessed" + (
            f", vs v{r['baseline_version']}" if r["baseline_version"] else ", first"
        )
        lines.append(
            f"{r['version']:>7}  {number('ks')}  {number('auc')}  {number('precision')}  "
            f"{number('recall')}  {(r['fingerprint'] or '?')[:12]:<12}  {decision:<22}  "
            f"{r['run_id'] or '?':<7}  {_serving(r):<16}  {r['pushed_at'] or '?'}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    """The command-line entry point: returns the exit status."""
    parser = cli.parser(
        "tf_cartola.inspect.versions", __doc__, "0 listed, 2 bad config or models.config"
    )
    config_lib.add_flag(parser)
    config_lib.add_serving_flags(parser)
    parser.add_argument(
        "--json", action="store_true", help="print JSON records instead of a table"
    )
    args = parser.parse_args(argv)
    cli.setup_logging(args.verbose)
    try:
        config = config_lib.load(args.config)
    except (config_lib.ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from tf_cartola.export import served as served_lib

    serving = config_lib.with_serving_flags(config, args).serving
    try:
        served = served_lib.served(
            serving.serving_dir, serving.model_name, serving.model_config_file
        )
    except served_lib.ServedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    records = describe(served.base_path, served)
    if args.json:
        print(json.dumps(records, indent=2))
    elif records:
        print(f"{serving.model_name} at {served.base_path}:\n{table(records)}")
        print(f"served: {served.describe()}")
    else:
        print(f"no version of {serving.model_name} is pushed under {served.base_path}")
    return 0


if __name__ == "__main__":
    cli.leave(cli.run(main))
