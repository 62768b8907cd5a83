"""Writes TF Serving's `models.config` with the ModelServerConfig protos (never by string templates).

    python -m serving.model_config --model_name cartola_pro --base_path /models/cartola_pro \
        --latest 2 [--label stable=3 --label canary=4] --out serving/models.config
"""

import argparse
import typing

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2


def build(model_name: str, base_path: str, latest: int = 2,
          labels: typing.Optional[typing.Mapping[str, int]] = None) -> model_server_config_pb2.ModelServerConfig:
    """A one-model config: serve the latest `latest` versions, with optional version labels."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name=model_name, base_path=base_path, model_platform="tensorflow")
    model.model_version_policy.latest.num_versions = latest
    for label, version in (labels or {}).items():
        model.version_labels[label] = version
    return config


def read(path: str) -> model_server_config_pb2.ModelServerConfig:
    """Parses a models.config text proto."""
    with open(path) as f:
        return text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())


def write(config: model_server_config_pb2.ModelServerConfig, path: str) -> None:
    with open(path, "w") as f:
        f.write(text_format.MessageToString(config))


def _label(text: str) -> typing.Tuple[str, int]:
    name, _, version = text.partition("=")
    if not name or not version.isdigit():
        raise argparse.ArgumentTypeError(f"expected LABEL=VERSION, got {text!r}")
    return name, int(version)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name", default="cartola_pro")
    parser.add_argument("--base_path", default="/models/cartola_pro", help="the base path inside the container")
    parser.add_argument("--latest", type=int, default=2, help="how many of the newest versions to serve")
    parser.add_argument("--label", type=_label, action="append", default=[], help="LABEL=VERSION, e.g. stable=3")
    parser.add_argument("--out", default="serving/models.config")
    args = parser.parse_args(argv)
    write(build(args.model_name, args.base_path, args.latest, dict(args.label)), args.out)


if __name__ == "__main__":
    main()
