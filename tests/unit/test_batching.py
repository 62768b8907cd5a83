"""serving.batching: TF Serving's batch scheduling on a plain function in place of a session
run."""

import concurrent.futures
import os
import threading

import grpc
import numpy as np
import pytest
from google.protobuf import text_format

from serving import batching, monitoring
from serving.errors import ServingError
from tests.helpers import ROOT, eventually


class Recorder:
    """A signature run that doubles `x` and records the rows of every run; `gate` holds runs until
    set, `running` is set once a run has started."""

    def __init__(self):
        self.sizes = []
        self.inputs = []
        self.gate = threading.Event()
        self.gate.set()
        self.running = threading.Event()

    def __call__(self, feeds):
        self.running.set()
        self.gate.wait(10)
        self.sizes.append(len(feeds["x"]))
        self.inputs.append(feeds["x"])
        return {"y": feeds["x"] * 2}


def _params(**fields):
    return batching.BatchingParameters(**{"num_batch_threads": 1, **fields}).validate()


def _behind_a_running_batch(batcher, run, first, requests):
    """Futures of `requests`, sent while the only batch thread runs `first` (held by the run's
    gate), so they queue together; the gate opens once they are queued."""
    run.gate.clear()
    blocker = threading.Thread(target=batcher, args=(first,))
    blocker.start()
    assert run.running.wait(10)  # The only batch thread now holds `first`'s run.
    pool = concurrent.futures.ThreadPoolExecutor(len(requests))
    futures = [pool.submit(batcher, r) for r in requests]
    rows = sum(batching.task_size(r) for r in requests)
    eventually(lambda: batcher.queued_rows() == rows, f"{rows} rows queued")
    run.gate.set()
    blocker.join()
    pool.shutdown()
    return futures


def _concurrently(batcher, requests):
    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(batcher, requests))


def test_our_batching_file_serves_any_client_batch_in_execution_batches():
    with open(os.path.join(ROOT, "serving", "batching_parameters.txt")) as f:
        params = batching.parse(f.read())
    assert params.enable_large_batch_splitting
    run = Recorder()
    x = np.arange(100_000, dtype=np.float32)  # Our clients send 500 rows; users may send far more.
    out = batching.Batcher(run, params)({"x": x})
    np.testing.assert_array_equal(out["y"], x * 2)
    assert sum(run.sizes) == 100_000 and max(run.sizes) == params.execution_batch_size


def test_requests_queued_while_a_batch_runs_are_merged_and_each_gets_its_rows_back():
    run = Recorder()
    batcher = batching.Batcher(run, _params(max_batch_size=64))
    requests = [{"x": np.arange(3, dtype=np.float32) + 10 * i} for i in range(8)]
    futures = _behind_a_running_batch(batcher, run, {"x": np.array([-1.0])}, requests)
    outputs = [f.result(timeout=10) for f in futures]
    for request, output in zip(requests, outputs):
        np.testing.assert_array_equal(output["y"], request["x"] * 2)
    assert run.sizes == [1, 24]


def test_an_under_full_batch_waits_for_more_rows_and_a_full_one_runs_at_once():
    run = Recorder()
    batcher = batching.Batcher(run, _params(max_batch_size=8, batch_timeout_micros=60_000_000))
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        waiting, queued = [], 0
        for rows in (2, 3):  # A free thread, yet the batch waits: 5 rows of 8, and a minute to go.
            waiting.append(pool.submit(batcher, {"x": np.ones(rows)}))
            queued += rows
            eventually(lambda: batcher.queued_rows() == queued, f"{queued} rows queued")
        assert run.sizes == []
        full = pool.submit(batcher, {"x": np.ones(3)})  # 8 rows: runs now, not in a minute.
        outputs = [f.result(timeout=30) for f in (*waiting, full)]
    assert [len(o["y"]) for o in outputs] == [2, 3, 3] and run.sizes == [8]


def test_an_under_full_batch_runs_when_its_timeout_passes():
    run = Recorder()
    batcher = batching.Batcher(run, _params(max_batch_size=8, batch_timeout_micros=50_000))
    assert len(batcher({"x": np.ones(2)})["y"]) == 2 and run.sizes == [2]


def test_batches_are_padded_to_an_allowed_size_with_the_first_row_of_the_last_task():
    run = Recorder()
    batcher = batching.Batcher(run, _params(max_batch_size=8, allowed_batch_sizes=(4, 8)))
    out = batcher({"x": np.array([5.0, 6.0, 7.0])})
    np.testing.assert_array_equal(out["y"], [10, 12, 14])
    np.testing.assert_array_equal(run.inputs[0], [5, 6, 7, 5])


def test_a_large_task_fills_the_open_batch_and_is_split_into_execution_batches():
    run = Recorder()
    batcher = batching.Batcher(
        run,
        _params(
            max_batch_size=100,
            enable_large_batch_splitting=True,
            max_execution_batch_size=4,
            batch_timeout_micros=300_000,
        ),
    )
    outputs = _concurrently(batcher, [{"x": np.arange(3.0)}, {"x": np.arange(100.0, 110.0)}])
    np.testing.assert_array_equal(outputs[1]["y"], np.arange(100.0, 110.0) * 2)
    assert sum(run.sizes) == 13 and max(run.sizes) == 4


def test_variable_length_inputs_are_padded_only_when_asked():
    requests = [{"x": np.array([[1.0, 2.0]])}, {"x": np.array([[3.0, 4.0, 5.0]])}]
    for pad in (False, True):
        run = Recorder()
        batcher = batching.Batcher(run, _params(max_batch_size=8, pad_variable_length_inputs=pad))
        futures = _behind_a_running_batch(batcher, run, {"x": np.zeros((1, 3))}, requests)
        if pad:
            # Padded with its first value.
            assert futures[0].result(timeout=10)["y"].tolist() == [[2, 4, 2]]
        else:
            with pytest.raises(ServingError) as e:
                futures[0].result(timeout=10)
            assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
            assert "have different shapes and padding is turned off" in e.value.message


@pytest.mark.parametrize(
    "feeds, message",
    [
        ({"x": np.ones(5)}, "Task size 5 is larger than maximum input batch size 4"),
        (
            {"x": np.ones(2), "z": np.ones(3)},
            "Batching Run() input tensors must have equal 0th-dimension size",
        ),
        ({"x": np.float32(1)}, "Batching Run() input tensors must have at least one dimension"),
    ],
)
def test_unbatchable_requests_get_tf_servings_refusal(feeds, message):
    with pytest.raises(ServingError) as e:
        batching.Batcher(Recorder(), _params(max_batch_size=4))(feeds)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.message == message


def test_a_full_queue_refuses_with_unavailable_and_the_queue_serves_on():
    run = Recorder()
    run.gate.clear()
    batcher = batching.Batcher(run, _params(max_batch_size=2, max_enqueued_batches=1))
    running = threading.Thread(target=batcher, args=({"x": np.ones(2)},))
    running.start()
    assert run.running.wait(10)  # Being processed: no longer counts against the queue.
    waiting = threading.Thread(target=batcher, args=({"x": np.ones(2)},))
    waiting.start()
    eventually(lambda: batcher.queued_rows() == 2, "the second batch queued")
    with pytest.raises(ServingError) as e:
        batcher({"x": np.ones(2)})
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert e.value.message == "The batch scheduling queue to which this task was submitted is full"
    run.gate.set()
    running.join()
    waiting.join()
    assert batcher({"x": np.ones(1)})["y"].tolist() == [2]


def test_a_run_whose_outputs_are_not_batched_fails_its_batch_and_the_thread_serves_on():
    calls = []

    def run(feeds):
        calls.append(len(feeds["x"]))
        return {"y": np.float32(1)} if len(calls) == 1 else {"y": feeds["x"]}

    batcher = batching.Batcher(run, _params())
    with pytest.raises(ServingError) as e:
        batcher({"x": np.ones(2)})
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert batcher({"x": np.ones(2)})["y"].tolist() == [1, 1]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "max_batch_size { value: 8 } allowed_batch_sizes: 4 allowed_batch_sizes: 2 "
            "allowed_batch_sizes: 8",
            "monotonically increasing",
        ),
        ("max_batch_size { value: 8 } allowed_batch_sizes: 4", "must equal max_batch_size (8)"),
        (
            "enable_large_batch_splitting: true max_batch_size { value: 8 } "
            "max_execution_batch_size { value: 4 }\n"
            "allowed_batch_sizes: 2 allowed_batch_sizes: 8",
            "must equal max_execution_batch_size (4)",
        ),
    ],
)
def test_parameters_tf_serving_refuses_are_refused(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        batching.parse(text)


def test_parse_reads_every_field_and_keeps_tf_servings_defaults():
    assert batching.parse("# nothing set\n") == batching.BatchingParameters()
    params = batching.parse(
        "max_batch_size { value: 64 }  # rows\nbatch_timeout_micros { value: 500 }\n"
        "max_enqueued_batches { value: 3 } num_batch_threads { value: 2 }\n"
        "allowed_batch_sizes: 32 allowed_batch_sizes: 64 pad_variable_length_inputs: true"
    )
    assert params == batching.BatchingParameters(64, 500, 3, 2, (32, 64), True, False, 0)
    assert params.execution_batch_size == 64


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_batch_sise { value: 8 }", 'has no field named "max_batch_sise"'),
        ("max_batch_size: 8", 'Expected "{"'),  # A wrapper (Int64Value), not a bare number.
        ("pad_variable_length_inputs: maybe", 'Expected "true" or "false"'),
    ],
)
def test_a_file_tf_serving_cannot_parse_is_refused_in_protobufs_words(text, message):
    with pytest.raises(text_format.ParseError, match=message):
        batching.parse(text)


def test_fields_tf_serving_has_and_this_server_does_not_implement_are_accepted_and_logged(caplog):
    params = batching.parse('max_batch_size { value: 8 } thread_pool_name { value: "pool" }')
    assert (
        params.max_batch_size == 8
        and "ignored (not implemented here): thread_pool_name" in caplog.text
    )


def test_the_monitoring_config_is_read_as_a_monitoring_config_proto():
    with open(os.path.join(ROOT, "serving", "monitoring.config")) as f:
        assert monitoring.prometheus_path(f.read()) == "/monitoring/prometheus/metrics"
    assert (
        monitoring.prometheus_path("prometheus_config { enable: true }") == monitoring.DEFAULT_PATH
    )
    assert monitoring.prometheus_path('prometheus_config { path: "/m" }') is None  # Not enabled.
    with pytest.raises(text_format.ParseError, match='has no field named "enabled"'):
        monitoring.prometheus_path("prometheus_config { enabled: true }")
