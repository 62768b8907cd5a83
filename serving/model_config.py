"""Builds TF Serving's `models.config` with the ModelServerConfig protos (never by string
templates).

    python -m serving.model_config  # prints the container's config
    python -m serving.model_config --base_path serving_models/cartola_pro --out \
        runs/models.local.config
    python -m serving.model_config --latest 2 --label stable=1 --label canary=2 --out \
        serving/models.config
    # roll back to 3
    python -m serving.model_config --version 3 --label stable=3 --out serving/models.config
    # a canary
    python -m serving.model_config --version 3 --version 4 --label stable=3 --label canary=4 ...

Prints the config unless --out names a file. A local base path is written absolute, as
TF Serving wants it. --latest N serves the newest N versions; --version N (repeatable) serves
exactly those (TF Serving's `specific` policy). A label must name a version the policy serves
and that is present under the base path, unless --allow_version_labels_for_unavailable_models
(TF Serving's flag of the same meaning).
Exit status: 0 printed or written, 2 bad arguments.
"""

import argparse
import sys
import typing

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tf_cartola.common import cli, files


def build(
    model_name: str,
    base_path: str,
    latest: int = 2,
    labels: typing.Optional[typing.Mapping[str, int]] = None,
    versions: typing.Sequence[int] = (),
) -> model_server_config_pb2.ModelServerConfig:
    """A one-model config: serve the latest `latest` versions, or exactly `versions` when given,
    with optional version labels.

    Args:
      model_name: the model's name.
      base_path: its serving folder (a local one is written absolute).
      latest: how many of the newest versions to serve.
      labels: version labels, e.g. {"stable": 3, "canary": 4}.
      versions: serve exactly these versions instead.
    """
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(
        name=model_name, base_path=base_path, model_platform="tensorflow"
    )
    if versions:
        model.model_version_policy.specific.versions.extend(sorted(set(versions)))
    else:
        model.model_version_policy.latest.num_versions = latest
    for label, version in (labels or {}).items():
        model.version_labels[label] = version
    return config


def parse(text: str) -> model_server_config_pb2.ModelServerConfig:
    """Parses a models.config text proto."""
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def read(path: str) -> model_server_config_pb2.ModelServerConfig:
    """Reads a models.config file (local or any TensorFlow filesystem)."""
    with files.open_file(path) as f:
        return parse(f.read())


def write(config: model_server_config_pb2.ModelServerConfig, path: str) -> None:
    """Writes a models.config file (local or any TensorFlow filesystem)."""
    with files.open_file(path, "w") as f:
        f.write(text_format.MessageToString(config))


def _label(text: str) -> typing.Tuple[str, int]:
    name, _, version = text.partition("=")
    if not name or not version.isdigit():
        raise argparse.ArgumentTypeError(f"expected LABEL=VERSION, got {text!r}")
    return name, int(version)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def _parser():
    parser = cli.parser("serving.model_config", __doc__, "0 printed or written, 2 bad arguments")
    parser.add_argument("--model_name", default="cartola_pro", help="default: %(default)s")
    parser.add_argument(
        "--base_path",
        default="/models/cartola_pro",
        help="the versions' folder: the container's (default: %(default)s) or a local one",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--latest",
        type=_positive,
        default=2,
        help="serve the newest N versions (default: %(default)s)",
    )
    which.add_argument(
        "--version",
        type=_positive,
        action="append",
        default=[],
        help="serve this version (repeat for several): a rollback, or a canary beside the stable "
        "one",
    )
    parser.add_argument(
        "--label", type=_label, action="append", default=[], help="LABEL=VERSION, e.g. stable=3"
    )
    parser.add_argument(
        "--allow_version_labels_for_unavailable_models",
        action="store_true",
        help="let a label name a version not (yet) under the base path, as TF Serving's flag does",
    )
    parser.add_argument(
        "--out", help="write here instead of printing (e.g. serving/models.config for the image)"
    )
    return parser


def main(argv=None) -> int:
    """The command-line entry point: returns the exit status."""
    args = _parser().parse_args(argv)
    cli.setup_logging(args.verbose)
    base_path = files.absolute(args.base_path)
    labels = dict(args.label)
    if labels and not args.allow_version_labels_for_unavailable_models:
        unserved = _unserved_labels(labels, base_path, args.version, args.latest)
        if unserved:
            print(
                f"error: {unserved}; pass --allow_version_labels_for_unavailable_models if they "
                "will exist when the server loads",
                file=sys.stderr,
            )
            return 2
    config = build(args.model_name, base_path, args.latest, labels, args.version)
    if not args.out:
        print(text_format.MessageToString(config), end="")
        return 0
    write(config, args.out)
    kept = f"versions {sorted(set(args.version))}"
    policy = kept if args.version else f"latest {args.latest} version(s)"
    with_labels = f", labels {labels}" if labels else ""
    print(f"wrote {args.out}: {args.model_name} at {base_path}, {policy}{with_labels}")
    return 0


def _unserved_labels(labels: dict, base_path: str, versions, latest: int) -> str:
    """What is wrong with labels that name no version the policy serves from what is under
    `base_path` now, or "" when every label names one.
    """
    from tf_cartola.export import store as model_store

    on_disk = model_store.versions(base_path)
    served = sorted(set(versions) & set(on_disk)) if versions else on_disk[-latest:]
    missing = {k: v for k, v in labels.items() if v not in served}
    if not missing:
        return ""
    where = (
        f"the policy serves {served} of {on_disk} under {base_path}"
        if on_disk
        else f"no version under {base_path}"
    )
    return f"label(s) {missing} name no served version ({where})"


if __name__ == "__main__":
    cli.leave(cli.run(main))
