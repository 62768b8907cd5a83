"""Which version of a model is served: the one answer every job, the client, the report and the DAG
use.

With the `models.config` the server runs with (`--model_config_file`, TF Serving's flag name, or
`serving.model_config_file` in the config), the model's entry decides:
- the versions served are its version policy's: `specific` (exactly those present), `latest N`
  (the newest N present; N defaults to 1, as in TF Serving) or `all`;
- the served version is the one its `stable` label names; a config without that label serves, to
  a request that names no version, the newest version its policy serves (TF Serving's rule), and
  that is the served version.
Without a models.config the server is taken to run TF Serving's default policy, the newest version
under the base path. A rollback is therefore one edited models.config: every job that reads it
after the edit validates, compares and scores with the rolled-back version.

The version numbers and labels come from the models.config; the version folders are read under
`<serving_dir>/<model_name>`, where the jobs push. A models.config whose base path is elsewhere (a
container's `/models/...`) is fine; another folder or bucket that exists here is logged as a
warning.
"""

import dataclasses
import logging
import typing

from tf_cartola.common import files

STABLE = "stable"  # The label a rollback or canary keeps on the version everyone should get.

log = logging.getLogger(__name__)


class ServedError(ValueError):
    """A models.config that cannot say what is served: not found, unreadable, or no such model."""


@dataclasses.dataclass(frozen=True)
class Policy:
    """What a models.config entry says of one model, before looking at the version folders."""

    kind: str  # "specific", "latest", "all"
    versions: typing.Tuple[int, ...] = ()  # `specific`
    num_versions: int = 1  # `latest`
    labels: typing.Mapping[str, int] = dataclasses.field(default_factory=dict)
    base_path: str = ""
    source: str = ""  # The models.config file, or "" for TF Serving's default policy.


@dataclasses.dataclass(frozen=True)
class Served:
    """A model's served versions, labels and the served version (None when nothing is served)."""

    model_name: str
    base_path: str
    version: typing.Optional[int]
    versions: typing.Tuple[int, ...]
    labels: typing.Mapping[str, int]
    source: str

    def describe(self) -> str:
        """One line: which version is served and why, e.g. `cartola_pro version 1 (label stable
        in models.config)`.
        """
        if self.version is None:
            return f"no version of {self.model_name} is served ({self.why()})"
        return f"{self.model_name} version {self.version} ({self.why()})"

    def why(self) -> str:
        """Where the answer came from."""
        if not self.source:
            return f"the newest under {self.base_path}"
        if self.labels.get(STABLE) == self.version:
            return f"label {STABLE} in {self.source}"
        return f"the newest that {self.source} serves"

    def version_dir(self) -> typing.Optional[str]:
        """The served version's folder, or None."""
        return None if self.version is None else files.join(self.base_path, self.version)


def policy(model_config_file: str, model_name: str) -> Policy:
    """The version policy and labels of `model_name` in a models.config (TensorFlow-free).

    Raises:
      ServedError: no such file, a file that is not a ModelServerConfig, or no such model in it.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    if not files.exists(model_config_file):
        raise ServedError(f"no models.config at {model_config_file}")
    with files.open_file(model_config_file) as f:
        text = f.read()
    try:
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as e:
        raise ServedError(f"{model_config_file} is not a models.config: {e}") from None
    entries = [m for m in config.model_config_list.config if m.name == model_name]
    if not entries:
        names = [m.name for m in config.model_config_list.config]
        raise ServedError(
            f"{model_config_file} serves no model {model_name!r} (it serves {names})"
        )
    [entry] = entries
    rule = entry.model_version_policy
    which = rule.WhichOneof("policy_choice") or "latest"
    return Policy(
        kind=which,
        versions=tuple(sorted(rule.specific.versions)),
        num_versions=rule.latest.num_versions or 1,
        labels=dict(entry.version_labels),
        base_path=entry.base_path,
        source=model_config_file,
    )


def chosen(rule: Policy, present: typing.Sequence[int], label: str = STABLE) -> typing.Tuple:
    """(the served version or None, the versions served) of a policy over the versions present."""
    present = sorted(present)
    if rule.kind == "specific":
        serving = [v for v in present if v in rule.versions]
    elif rule.kind == "all":
        serving = present
    else:
        serving = present[-rule.num_versions :]
    version = rule.labels.get(label)
    if version not in serving:
        version = serving[-1] if serving and label == STABLE else None
    return version, tuple(serving)


def served(
    serving_dir: str,
    model_name: str,
    model_config_file: str = "",
    label: str = STABLE,
) -> Served:
    """Which version of `model_name` is served (see the module docstring).

    Args:
      serving_dir: where versions are pushed: `<serving_dir>/<model_name>/<version>/`.
      model_name: the model's name.
      model_config_file: the models.config the server runs with, or "" for TF Serving's default
        policy (the newest version).
      label: the label whose version is wanted ("stable" by default; another label that is not
        in the config serves nothing).

    Raises:
      ServedError: a models.config that cannot say (see `policy`).
    """
    from tf_cartola.export import store

    base_path = files.join(serving_dir, model_name)
    rule = policy(model_config_file, model_name) if model_config_file else Policy("latest")
    if rule.base_path and files.absolute(rule.base_path) != files.absolute(base_path):
        if files.is_url(rule.base_path) or files.exists(rule.base_path):
            log.warning(
                "%s serves %s from %s; its versions are read from %s",
                model_config_file,
                model_name,
                rule.base_path,
                base_path,
            )
    version, serving = chosen(rule, store.versions(base_path), label)
    return Served(model_name, base_path, version, serving, rule.labels, rule.source)
