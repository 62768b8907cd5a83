"""Loads model versions from base paths as TF Serving does: poll, load new, warm up, unload
removed.
"""

import dataclasses
import logging
import threading
import time
import typing

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.batching import Batcher, BatchingParameters
from serving.errors import ServingError, invalid, not_found
from serving.options import LoadRetries
from tf_cartola.common import files
from tf_cartola.contract.signatures import DEFAULT_SIGNATURE
from tf_cartola.export import store as model_store

log = logging.getLogger(__name__)

INIT_OP_SIGNATURE = "__saved_model_init_op"  # The SavedModel's initializer: listed, never served.


@dataclasses.dataclass
class Servable:
    """One loaded version of a model: its own graph and session, as TF Serving runs a SavedModel
    bundle. A signature runs as one session call feeding and fetching the tensors its SignatureDef
    names.
    """

    name: str
    version: int
    path: str
    session: tf.compat.v1.Session
    # As stored (metadata shows them all).
    signature_defs: typing.Mapping[str, meta_graph_pb2.SignatureDef]
    _runners: dict = dataclasses.field(default_factory=dict, repr=False)

    def signature(self, name: str):
        """(run, SignatureDef) of a signature; '' means serving_default. `run` takes {input alias:
        array} with every input and returns {output alias: array} of every output.
        """
        name = name or DEFAULT_SIGNATURE
        if name not in self.signature_defs or name == INIT_OP_SIGNATURE:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.'
            )
        if name not in self._runners:
            raise invalid(
                f'Signature "{name}" has composite (sparse or ragged) tensors, which this server '
                "does "
                "not feed or fetch"
            )
        return self._runners[name], self.signature_defs[name]


def _runner(session: tf.compat.v1.Session, sig: meta_graph_pb2.SignatureDef):
    inputs, outputs = sorted(sig.inputs), sorted(sig.outputs)
    call = session.make_callable(
        [sig.outputs[k].name for k in outputs], [sig.inputs[k].name for k in inputs]
    )

    def run(feeds: dict) -> dict:
        return dict(zip(outputs, call(*[feeds[k] for k in inputs])))

    return run


def _plain(sig: meta_graph_pb2.SignatureDef) -> bool:
    return all(
        info.WhichOneof("encoding") == "name"
        for info in [*sig.inputs.values(), *sig.outputs.values()]
    )


def load_servable(
    name: str, version: int, path: str, batching: typing.Optional[BatchingParameters] = None
) -> Servable:
    """Loads the `serve` MetaGraph of a SavedModel version into a session of its own; with
    `batching`, each signature's runs go through a batch queue of its own (TF Serving's
    --enable_batching).

    Args:
      name: the model's name.
      version: the version's number.
      path: the version's folder.
      batching: TF Serving's batching parameters, or None for no batching.
    """
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    # tf.compat.v1's loader is the session-based one; its deprecation notice is for training code,
    # so it is kept out of the server's log.
    tf_log = tf.get_logger()
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)
    try:
        with graph.as_default():
            meta_graph = tf.compat.v1.saved_model.load(session, [tf.saved_model.SERVING], path)
    finally:
        tf_log.setLevel(level)
    signature_defs = dict(meta_graph.signature_def)
    runners = {
        key: _runner(session, sig)
        for key, sig in signature_defs.items()
        if key != INIT_OP_SIGNATURE and _plain(sig)
    }
    if batching:
        runners = {key: Batcher(run, batching) for key, run in runners.items()}
    return Servable(name, version, path, session, signature_defs, _runners=runners)


def _aspired(policy, on_disk: typing.List[int]) -> typing.List[int]:
    """The versions a ServableVersionPolicy wants loaded (TF Serving's default: the latest one)."""
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return on_disk
    if which == "specific":
        return sorted(set(on_disk) & set(policy.specific.versions))
    return on_disk[-(policy.latest.num_versions or 1) :] if on_disk else []


class ServableManager:
    """Keeps the aspired versions of each configured model loaded, polling the base paths, and
    reports each version's state as GetModelStatus does: LOADING (also while a failed load waits
    for its retry), AVAILABLE, UNLOADING, END (unloaded, or given up with the load's error).

    A request takes a reference to a Servable and keeps it for its whole duration, so
    unloading a version (dropping it from the table) never fails a request in flight.
    """

    def __init__(
        self,
        config: model_server_config_pb2.ModelServerConfig,
        poll_seconds: float = 1.0,
        warmup: typing.Optional[typing.Callable[[Servable], int]] = None,
        batching: typing.Optional[BatchingParameters] = None,
        retries: LoadRetries = LoadRetries(),
    ):
        self._models = {m.name: m for m in config.model_config_list.config}
        self._batching = batching
        self._poll_seconds = poll_seconds
        self._warmup = warmup
        self._retries = retries
        self._table: typing.Dict[str, typing.Dict[int, Servable]] = {
            name: {} for name in self._models
        }
        self._states: typing.Dict[
            typing.Tuple[str, int], typing.Tuple[str, str]
        ] = {}  # (state, error)
        self._failures: typing.Dict[
            typing.Tuple[str, int], typing.Tuple[int, float]
        ] = {}  # (count, retry at)
        self._lock = threading.Lock()  # Guards the table; requests read it.
        self._poll_lock = threading.Lock()  # One poll or reload at a time.
        self._stop = threading.Event()
        self._thread = None

    def start(self) -> "ServableManager":
        """Loads what is on disk now, then keeps polling in a daemon thread."""
        self.poll()
        if self._poll_seconds > 0:
            self._thread = threading.Thread(target=self._loop, name="servable-poller", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stops polling; the loaded versions stay loaded (their sessions end with the process)."""
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self.poll()
            except Exception:  # A bad poll must not kill the poller; the next one retries.
                log.exception("polling the model base paths failed")

    def poll(self) -> None:
        """One pass: load aspired versions not yet loaded, unload versions no longer aspired."""
        with self._poll_lock:
            self._poll()

    def _poll(self) -> None:
        for name, model in self._models.items():
            base = model.base_path
            on_disk = model_store.versions(base)
            if not on_disk:  # As TF Serving says it, on every poll.
                log.warning("No versions of servable %s found under base path %s", name, base)
            aspired = _aspired(model.model_version_policy, on_disk)
            current = self._table[name]
            fresh = dict((v, s) for v, s in current.items() if v in aspired)
            for version in aspired:
                if version not in fresh and self._due(name, version):
                    servable = self._load(name, version, model_store.version_dir(base, version))
                    if servable:
                        fresh[version] = servable
            for key in [k for k in self._failures if k[0] == name and k[1] not in aspired]:
                del self._failures[key]  # Aspired again later, it gets a fresh set of tries.
            if fresh.keys() != current.keys():
                gone = current.keys() - fresh.keys()
                self._set_states(name, gone, "UNLOADING")
                with self._lock:
                    self._table[name] = fresh
                self._set_states(name, gone, "END")
                for version in gone:
                    log.info("unloaded %s version %d", name, version)

    def _due(self, name: str, version: int) -> bool:
        failures, retry_at = self._failures.get((name, version), (0, 0.0))
        return failures <= self._retries.max_retries and time.monotonic() >= retry_at

    def _load(self, name: str, version: int, path: str) -> typing.Optional[Servable]:
        """Loads and warms up one version; on failure, schedules its retry or gives it up."""
        self._set_states(name, [version], "LOADING")
        try:
            servable = load_servable(name, version, path, self._batching)
            warmed = self._warmup(servable) if self._warmup else 0
        except Exception as e:  # A broken version is reported in status, not fatal.
            failures = self._failures.get((name, version), (0, 0.0))[0] + 1
            self._failures[(name, version)] = (
                failures,
                time.monotonic() + self._retries.interval_seconds,
            )
            if failures > self._retries.max_retries:
                log.error(
                    "loading %s version %d failed %d time(s), giving up: %s",
                    name,
                    version,
                    failures,
                    e,
                )
                self._set_states(name, [version], "END", str(e))
            else:
                log.warning(
                    "loading %s version %d failed (%s); retry %d of %d in %.3g s",
                    name,
                    version,
                    e,
                    failures,
                    self._retries.max_retries,
                    self._retries.interval_seconds,
                )
            return None
        self._failures.pop((name, version), None)
        self._set_states(name, [version], "AVAILABLE")
        log.info("loaded %s version %d (%d warmup requests)", name, version, warmed)
        return servable

    def _set_states(
        self, name: str, versions: typing.Iterable[int], state: str, error: str = ""
    ) -> None:
        with self._lock:
            for version in versions:
                self._states[(name, version)] = (state, error)

    def reload(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Serves the models of a new config (as TF Serving does on
        --model_config_file_poll_wait_seconds): new models are loaded, removed ones unloaded, the
        others keep their loaded versions.
        """
        models = {m.name: m for m in config.model_config_list.config}
        with self._poll_lock:
            with self._lock:
                self._models = models
                self._table = {name: self._table.get(name, {}) for name in models}
                self._states = {k: v for k, v in self._states.items() if k[0] in models}
            self._poll()

    def get(
        self, name: str, version: typing.Optional[int] = None, label: typing.Optional[str] = None
    ) -> Servable:
        """The servable for a request: latest, a specific version, or a version label.

        Args:
          name: the model's name.
          version: a specific version, or None.
          label: a version label, or None (neither: the latest).
        """
        with self._lock:
            versions = self._table.get(name)
        if versions is None:
            raise not_found(f"Servable not found for request: Latest({name})")
        if label:
            labels = self._models[name].version_labels
            if label not in labels:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Unrecognized servable version label: {label}",
                )
            version = labels[label]
        if version is None:
            if not versions:
                raise not_found(f"Servable not found for request: Latest({name})")
            return versions[max(versions)]
        if version not in versions:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return versions[version]

    def statuses(self, name: str, version: typing.Optional[int] = None) -> typing.List[tuple]:
        """(version, state, error message) for the model's versions, newest first, as
        GetModelStatus reports them.
        """
        with self._lock:
            if name not in self._table:
                raise not_found(f"Could not find any versions of model {name}")
            rows = sorted(
                ((v, *state) for (n, v), state in self._states.items() if n == name), reverse=True
            )
        if version is not None:
            rows = [r for r in rows if r[0] == version]
            if not rows:
                raise not_found(f"Could not find version {version} of model {name}")
        return rows

    def unavailable_labels(self) -> typing.List[str]:
        """Version labels that name a version not loaded, as "model/label=version" (TF Serving
        refuses such a config unless --allow_version_labels_for_unavailable_models).
        """
        with self._lock:
            return [
                f"{name}/{label}={version}"
                for name, model in sorted(self._models.items())
                for label, version in sorted(model.version_labels.items())
                if version not in self._table.get(name, {})
            ]

    def model_names(self) -> typing.List[str]:
        """The names of the served models."""
        return sorted(self._models)


def single_model_config(
    name: str, base_path: str, latest: int = 1
) -> model_server_config_pb2.ModelServerConfig:
    """The config TF Serving builds from --model_name / --model_base_path (latest version only).

    Args:
      name: the model's name (--model_name).
      base_path: its serving folder (--model_base_path).
      latest: how many of the newest versions to serve.
    """
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(
        name=name, base_path=files.absolute(base_path), model_platform="tensorflow"
    )
    model.model_version_policy.latest.num_versions = latest
    return config
