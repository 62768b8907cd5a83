"""The model version a scoring run uses, and the schema rows are checked against."""

import dataclasses
import logging
import typing

from tf_cartola.common import files
from tf_cartola.export import served as served_lib
from tf_cartola.export import store as model_store
from tf_cartola.validate import scoring_checks

log = logging.getLogger(__name__)


class NoModel(FileNotFoundError):
    """No model version where the run was told to look."""


@dataclasses.dataclass(frozen=True)
class Model:
    """The model version that scores: its name, number (None for an export outside a serving
    folder) and folder.
    """

    name: str
    version: typing.Optional[int]
    path: str

    def made_by(self, run_id: str) -> typing.Tuple[str, typing.Optional[int], str]:
        """(model_name, model_version, run_id): what every score row of the run carries."""
        return self.name, self.version, run_id


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


def schema_rules(
    model_path: typing.Optional[str], columns: typing.Sequence[str], why_none: str = ""
) -> typing.List[scoring_checks.Rule]:
    """The rules of the schema a model version carries, for the columns it takes; none (and a
    warning that rows go unchecked) when it carries no schema, or when its folder is unknown
    (`model_path` None, `why_none` saying why).
    """
    rules = None if model_path is None else scoring_checks.of_model(model_path, columns)
    if rules is None:
        why = why_none or f"{model_path} carries no schema (not exported by tf_cartola.train)"
        log.warning("rows are not checked against a schema: %s", why)
    return rules or []
