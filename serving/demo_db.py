"""`make demo-db`: PostgreSQL at both ends, start to scores in the table.

    python -m serving.demo_db --config configs/default.yaml --rows 20000

Starts a throwaway PostgreSQL on a free loopback port (tf_cartola.common.local_postgres),
loads generated users into the table `users` with COPY, preprocesses them from the
database (4 id partitions under one snapshot), trains, blesses and pushes into
runs/demo_db/serving, scores every user in-process with the pushed version into the
table `scores`, prints a few, and stops the server. The password only ever travels in
PGPASSWORD.
"""

import os
import sys

from tf_cartola.common import cli, files, timing
from tf_cartola.contract import config as config_lib

OUT = "runs/demo_db"


def main(argv=None) -> int:
    """The command-line entry point: returns the exit status."""
    parser = cli.parser("serving.demo_db", __doc__, "0 scored, 1 a step failed")
    config_lib.add_flag(parser)
    parser.add_argument(
        "--rows", type=int, default=20_000, help="users to generate (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    cli.setup_logging(args.verbose)
    from tf_cartola import synthetic
    from tf_cartola.common import local_postgres
    from tf_cartola.write import postgres as write_postgres

    files.makedirs(OUT)
    csv_path = files.join(OUT, "users.csv")
    synthetic.write_csv(synthetic.generate(args.rows, seed=0), csv_path)
    with local_postgres.running() as server:
        os.environ.update(server.env)
        loaded = write_postgres.load_csv(server.url, server.password, "users", csv_path)
        print(f"PostgreSQL up at {server.url}; loaded {loaded} users into table users")
        version_dir = _pushed(args.config, server.url)
        if version_dir is None or _scored(version_dir, server.url):
            return 1
        _show_top(server.url)
    return 0


def _pushed(config: str, url: str):
    """Preprocesses the users table in 4 partitions, trains and pushes: the version's folder, or
    None when it was not blessed.
    """
    from beam_jobs import preprocess
    from tf_cartola.train import training

    manifest = preprocess.run(
        [
            *("--config", config, "--input", url, "--table", "users", "--partitions", "4"),
            *("--output_dir", files.join(OUT, "preprocess"), "--baseline", "none"),
        ]
    )
    print(
        f"preprocessed {manifest.rows} from {manifest.inputs[0]['path']} "
        f"(fingerprint {manifest.inputs[0]['fingerprint']})"
    )
    result = training.train(
        config_lib.load(config),
        files.join(OUT, "preprocess"),
        serving_dir=files.join(OUT, "serving"),
        run_dir=files.join(OUT, "train"),
        force=True,
    )
    if not result.get("version_dir"):
        print(f"the model was not blessed: {result['reasons']}", file=sys.stderr)
        return None
    print(f"pushed version {result['version']}: KS {result['metrics']['ks']:.3f}")
    return result["version_dir"]


def _scored(version_dir: str, url: str) -> int:
    """Scores the users table into the scores table with serving.client: its exit status."""
    from serving import client

    return client.main(
        [
            *("--model_dir", version_dir, "--db", url, "--table", "users"),
            *("--out", url, "--scores_table", "scores", "--no_progress"),
            # The demo's users are of no month: this one stands in.
            *("--run_id", timing.this_month()),
            *("--quarantine", files.join(OUT, "scores.bad.jsonl")),
        ]
    )


def _show_top(url: str) -> None:
    """Prints the five highest scores of the scores table."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            'SELECT "GLOBO_ID", pro_probability, model_name, model_version, scored_at '
            "FROM scores ORDER BY pro_probability DESC LIMIT 5"
        ).fetchall()
    print("top 5 of table scores:")
    for row in rows:
        print("  ", *row)


if __name__ == "__main__":
    cli.leave(cli.run(main))
