"""One truth of what is served: the models.config's policy and `stable` label, honoured by every
job; time only moves forward; reruns and concurrent pushes replace, never add."""

import glob
import json
import os
import shutil
import threading

import psycopg
import pytest
import tensorflow as tf
from apache_beam.io.filesystem import BeamIOError, FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

from beam_jobs import score, validate
from beam_jobs.shared import inputs, outputs
from serving import model_config
from tests.helpers import CONFIG
from tf_cartola.contract import config as config_lib
from tf_cartola.export import served as served_lib
from tf_cartola.export import store
from tf_cartola.inspect import report, versions
from tf_cartola.train import training
from tf_cartola.write.postgres import ScoresTable

MODEL = "cartola_pro"


class PerObjectFileSystem(LocalFileSystem):
    """A local folder seen as an object store, `perobject:///PATH`: no folders, only objects whose
    names share prefixes, so `exists` is true of files alone (as on GCS)."""

    PREFIX = "perobject://"

    @classmethod
    def scheme(cls):
        return "perobject"

    def has_dirs(self):
        return False

    def _local(self, path):
        return path[len(self.PREFIX) :]

    def exists(self, path):
        return os.path.isfile(self._local(path))

    def metadata(self, path):
        stat = os.stat(self._local(path))
        return FileMetadata(path, stat.st_size, stat.st_mtime)

    def _list(self, prefix):
        folder = os.path.dirname(self._local(prefix))
        for parent, _, names in os.walk(folder):
            for name in names:
                path = self.PREFIX + os.path.join(parent, name)
                if path.startswith(prefix):
                    yield self.metadata(path)

    def delete(self, paths):
        missing = {p: FileNotFoundError(p) for p in paths if not self.exists(p)}
        if missing:
            raise BeamIOError("Delete operation failed", missing)
        for path in paths:
            os.remove(self._local(path))


def _config_file(path, base_path, versions_served=(), latest=1, **labels) -> str:
    model_config.write(
        model_config.build(MODEL, str(base_path), latest, labels, versions_served), str(path)
    )
    return str(path)


@pytest.fixture
def months(trained, tmp_path):
    """A serving folder holding the trained export as version 1 (data of 2026-01) and version 2
    (2026-03)."""
    _, result = trained
    base = tmp_path / "serving" / MODEL
    for version, month in ((1, "2026-01"), (2, "2026-03")):
        shutil.copytree(result["export_dir"], base / str(version))
        provenance = base / str(version) / training.PROVENANCE_FILE
        provenance.write_text(json.dumps({**json.loads(provenance.read_text()), "run_id": month}))
    return result, base


@pytest.mark.parametrize(
    "policy, labels, expected",
    [
        ({}, {}, (2, (2,))),
        ({"latest": 2}, {}, (2, (1, 2))),
        ({"versions_served": (1,)}, {"stable": 1}, (1, (1,))),
        ({"versions_served": (1, 2)}, {"stable": 1, "canary": 2}, (1, (1, 2))),
        ({"versions_served": (1, 2)}, {"canary": 2}, (2, (1, 2))),
        ({"versions_served": (3,)}, {}, (None, ())),
    ],
)
def test_the_served_version_follows_the_policy_and_the_stable_label(
    tmp_path, policy, labels, expected
):
    base = tmp_path / MODEL
    for version in (1, 2):
        (base / str(version)).mkdir(parents=True)
    config = _config_file(tmp_path / "models.config", base, **policy, **labels)
    found = served_lib.served(str(tmp_path), MODEL, config)
    assert (found.version, found.versions) == expected
    assert served_lib.served(str(tmp_path), MODEL).version == 2  # No config: the newest.


def test_a_models_config_that_cannot_say_is_one_clear_error(tmp_path):
    with pytest.raises(served_lib.ServedError, match="no models.config at"):
        served_lib.served(str(tmp_path), MODEL, str(tmp_path / "none.config"))
    (tmp_path / "bad.config").write_text("model_config_list { nonsense: 1 }")
    with pytest.raises(served_lib.ServedError, match="is not a models.config"):
        served_lib.served(str(tmp_path), MODEL, str(tmp_path / "bad.config"))
    other = model_config.build("other", str(tmp_path / "other"))
    model_config.write(other, str(tmp_path / "other.config"))
    with pytest.raises(served_lib.ServedError, match="serves no model 'cartola_pro'"):
        served_lib.served(str(tmp_path), MODEL, str(tmp_path / "other.config"))


def test_a_rollback_by_config_is_honoured_by_validate_score_versions_and_the_table(
    months, small_csv, tmp_path, pg_env
):
    _, base = months
    rollback = _config_file(tmp_path / "models.config", base, versions_served=(1,), stable=1)
    serving = ["--serving_dir", str(base.parent), "--model_config_file", rollback]
    checked = validate.run(
        ["--input", small_csv, *serving, "--output_dir", str(tmp_path / "validate")]
    )
    assert "cartola_pro version 1 (label stable in" in checked["baseline"]["description"]
    # An earlier run's shards (another count), quarantine and rows of another version: replaced.
    for stale in ("s-00000-of-00003.csv", "s-00002-of-00003.csv", "s.bad-00000-of-00002.jsonl"):
        (tmp_path / stale).write_text("stale\n")
    table = ScoresTable(pg_env.url, "rollback_scores")
    table.upsert([(-1, 0.5, MODEL, 2, "2026-05", 1, None), (-2, 0.5, MODEL, 2, "2026-05", 2, 0)])
    table.close()
    manifest = score.run(
        [
            "--input",
            small_csv,
            *serving,
            "--output",
            str(tmp_path / "s"),
            "--db",
            pg_env.url,
            "--scores_table",
            "rollback_scores",
            "--run_id",
            "2026-05",
        ]
    )
    assert manifest["model"]["version"] == 1
    shards = manifest["outputs"]["scores"]
    assert shards == sorted(glob.glob(str(tmp_path / "s-*-of-*.csv")))
    assert not (tmp_path / "s.bad-00000-of-00002.jsonl").exists()
    assert all(shard.endswith(f"-of-{len(shards):05d}.csv") for shard in shards)
    with psycopg.connect(pg_env.url) as conn:
        held = conn.execute(
            'SELECT model_version, count(*), min("GLOBO_ID") FROM rollback_scores '
            "WHERE run_id = '2026-05' GROUP BY model_version"
        ).fetchall()
    assert [(v, n) for v, n, _ in held] == [(1, manifest["rows"]["scored"])] and held[0][2] > 0


def test_versions_lists_the_served_version_and_labels(months, tmp_path, capsys):
    _, base = months
    canary = _config_file(
        tmp_path / "canary.config", base, versions_served=(1, 2), stable=1, canary=2
    )
    argv = ["--serving_dir", str(base.parent), "--model_config_file", canary, "--json"]
    assert versions.main(argv) == 0
    listed = {r["version"]: r for r in json.loads(capsys.readouterr().out)}
    assert (listed[1]["served"], listed[1]["labels"]) == (True, ["stable"])
    assert (listed[2]["served"], listed[2]["serving"], listed[2]["labels"]) == (
        False,
        True,
        ["canary"],
    )
    assert [listed[v]["run_id"] for v in (1, 2)] == ["2026-01", "2026-03"]


def test_an_old_month_is_not_pushed_without_force_and_the_comparison_is_with_the_served_version(
    months, tmp_path
):
    result, base = months
    cfg = config_lib.load(CONFIG)
    preprocess_dir = result["preprocess_dir"]
    backfill = training.train(
        cfg, preprocess_dir, str(base.parent), str(tmp_path / "r1"), run_id="2026-02"
    )
    assert backfill["backfill"] and "version 2" in backfill["served"]
    assert store.versions(str(base)) == [1, 2] and not (tmp_path / "r1").exists()
    rollback = _config_file(tmp_path / "models.config", base, versions_served=(1,), stable=1)
    cfg = config_lib.override(cfg, "serving", model_config_file=rollback)
    forced = training.train(
        cfg, preprocess_dir, str(base.parent), str(tmp_path / "r2"), force=True, run_id="2026-02"
    )
    assert forced["baseline_version"] == 1 and forced["version"] == 3
    assert forced["served"].startswith("cartola_pro version 1 (label stable in")
    provenance = training.read_provenance(forced["version_dir"])
    assert (provenance["run_id"], provenance["force"]) == ("2026-02", True)
    [decision] = [
        json.loads(line) for line in open(f"{base}.decisions.jsonl") if '"version": 3' in line
    ]
    assert (decision["force"], decision["run_id"]) == (True, "2026-02")
    page = report.write_report(
        str(tmp_path / "report.html"), preprocess_dir, forced["run_dir"], [0, 1], [0.2, 0.8]
    )
    assert "<b>Served:</b> cartola_pro version 1 (label stable in" in open(page).read()


def test_concurrent_pushes_each_get_a_version_of_their_own(trained, tmp_path):
    _, result = trained
    for base in (str(tmp_path / MODEL), f"ram://{tmp_path.name}/{MODEL}"):
        pushed, errors = [], []

        def push(base=base, pushed=pushed, errors=errors):
            try:
                pushed.append(store.push(result["export_dir"], base))
            except Exception as e:  # Reported below, with the filesystem.
                errors.append(e)

        threads = [threading.Thread(target=push) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Distinct and complete; under contention a withdrawn claim may leave a number unused.
        assert not errors and sorted(pushed) == store.versions(base), (base, pushed)
        assert len(set(pushed)) == 4
        for version in pushed:
            assert tf.io.gfile.exists(f"{base}/{version}/{store.SAVED_MODEL_FILE}")
        assert tf.io.gfile.listdir(f"{base}/{store.CLAIMS}") == []


def test_a_glob_without_a_folder_part_matches_from_the_working_folder(small_csv, tmp_path):
    shutil.copy(small_csv, tmp_path / "m1.csv")
    os.chdir(tmp_path)
    found, _ = inputs.describe_inputs("m?.csv")
    assert [f["path"] for f in found] == [str(tmp_path / "m1.csv")]


def test_a_repeated_unknown_flag_is_exit_status_2(small_csv, tmp_path, capsys):
    argv = ["--input", small_csv, "--output", str(tmp_path / "s"), "--foo", "1", "--foo", "2"]
    assert score.main(argv) == 2
    assert "unknown flag --foo" in capsys.readouterr().err


def test_clearing_deletes_by_match_where_exists_is_per_object(tmp_path):
    root = f"perobject://{tmp_path}"
    for name in ("raw/eval/data-00000-of-00002.gz", "bad_rows/x.jsonl", "manifest.json"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("earlier run")
    (tmp_path / "mine.txt").write_text("not ours")
    assert not outputs.FileSystems.exists(f"{root}/raw")  # A folder is only a name prefix.
    deleted = outputs.Layout(root).clear()
    assert len(deleted) == 3 and outputs.Layout(root).clear() == []
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["mine.txt"]
    for stale in ("s-00000-of-00003.csv", "s.bad-00001-of-00002.jsonl", "s.manifest.json"):
        (tmp_path / stale).write_text("earlier run")
    patterns = [f"{root}/s-*-of-*.csv", f"{root}/s.bad-*-of-*.jsonl", f"{root}/s.manifest.json"]
    assert len(outputs.delete_matching(patterns)) == 3
    assert sorted(glob.glob(str(tmp_path / "s*"))) == []


def test_a_local_path_a_remote_runners_workers_cannot_reach_is_refused_before_any_work(
    months, small_csv, tmp_path, capsys
):
    _, base = months
    (tmp_path / "s.manifest.json").write_text("an earlier run's")
    argv = ["--input", small_csv, "--serving_dir", str(base.parent), "--output"]
    argv += [str(tmp_path / "s"), "--runner", "DataflowRunner"]
    assert score.main(argv) == 2
    error = capsys.readouterr().err
    assert (
        "DataflowRunner's workers run on other machines and cannot reach the local path" in error
    )
    assert (tmp_path / "s.manifest.json").read_text() == "an earlier run's"  # Nothing deleted.
