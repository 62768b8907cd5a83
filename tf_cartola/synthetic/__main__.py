"""`python -m tf_cartola.synthetic`: seeded synthetic users (tf_cartola.synthetic) in a CSV."""

import time

import pandas as pd

from tf_cartola.common import cli
from tf_cartola.contract import features as F
from tf_cartola.synthetic import log, next_month, write_csv, write_generated


def main(argv=None) -> int:
    """The command-line entry point: returns the exit status."""
    parser = cli.parser("tf_cartola.read.synthetic", __doc__, "0 written, 2 bad arguments")
    parser.add_argument(
        "--rows", type=int, default=128_000, help="users to generate (default: %(default)s)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the same seed gives the same file (default: %(default)s)",
    )
    parser.add_argument(
        "--next_month_of",
        metavar="FILE",
        help="write the month after this CSV's: the same users, a few gone and new, some "
        "converting to PRO or leaving it (--rows is then ignored)",
    )
    parser.add_argument("--out", required=True, help="CSV file to write")
    args = parser.parse_args(argv)
    cli.setup_logging(args.verbose)
    start = time.perf_counter()
    if args.next_month_of:
        previous = pd.read_csv(args.next_month_of, dtype={F.PIXELS: object})
        frame = next_month(previous, args.seed)
        write_csv(frame, args.out)
        rows = len(frame)
    else:
        write_generated(args.rows, args.seed, args.out)
        rows = args.rows
    log.info("wrote %d rows to %s in %.2f s", rows, args.out, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    cli.leave(cli.run(main))
