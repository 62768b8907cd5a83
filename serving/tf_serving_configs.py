"""TF Serving's BatchingParameters and MonitoringConfig as protobuf messages, parsed with
text_format.

tensorflow-serving-api ships the protos of `models.config` but not these two
(`session_bundle_config.proto`, `monitoring_config.proto` in TF Serving). Their descriptors
are built here from the field names and types TF Serving 2.16 declares, so a
`--batching_parameters_file` or `--monitoring_config_file` is read by protobuf's own text
format parser, as TF Serving reads it: a misspelt field or a value of the wrong type is
refused at start-up, in protobuf's words.
"""

import functools

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)

_PACKAGE = "tensorflow.serving"
_INT64, _BOOL, _STRING = (
    ".google.protobuf.Int64Value",
    ".google.protobuf.BoolValue",
    ".google.protobuf.StringValue",
)
_F = descriptor_pb2.FieldDescriptorProto

# (name, type: a wrapper message or a scalar type, repeated); the numbers are the order given.
BATCHING_FIELDS = (
    ("max_batch_size", _INT64, False),
    ("batch_timeout_micros", _INT64, False),
    ("max_enqueued_batches", _INT64, False),
    ("num_batch_threads", _INT64, False),
    ("thread_pool_name", _STRING, False),
    ("allowed_batch_sizes", _F.TYPE_INT64, True),
    ("pad_variable_length_inputs", _F.TYPE_BOOL, False),
    ("enable_large_batch_splitting", _F.TYPE_BOOL, False),
    ("max_execution_batch_size", _INT64, False),
    ("enable_lazy_split", _F.TYPE_BOOL, False),
    ("batch_padding_policy", _F.TYPE_STRING, False),
    ("enable_priority_queue", _F.TYPE_BOOL, False),
    ("low_priority_max_batch_size", _INT64, False),
    ("low_priority_batch_timeout_micros", _INT64, False),
    ("low_priority_max_enqueued_batches", _INT64, False),
    ("low_priority_allowed_batch_sizes", _F.TYPE_INT64, True),
    ("mixed_priority_batching_policy", _F.TYPE_STRING, False),
)
MONITORING_FIELDS = {
    "PrometheusConfig": (("enable", _F.TYPE_BOOL, False), ("path", _F.TYPE_STRING, False)),
    "MonitoringConfig": (("prometheus_config", f".{_PACKAGE}.PrometheusConfig", False),),
}


def _message(file_proto, name: str, fields) -> None:
    message = file_proto.message_type.add(name=name)
    for number, (field, kind, repeated) in enumerate(fields, start=1):
        label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
        if isinstance(kind, str):
            message.field.add(
                name=field, number=number, label=label, type=_F.TYPE_MESSAGE, type_name=kind
            )
        else:
            message.field.add(name=field, number=number, label=label, type=kind)


@functools.lru_cache(maxsize=None)
def _classes() -> dict:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tf_cartola/tf_serving_configs.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=[wrappers.name],
    )
    _message(file_proto, "BatchingParameters", BATCHING_FIELDS)
    for name, fields in MONITORING_FIELDS.items():
        _message(file_proto, name, fields)
    pool.Add(file_proto)
    names = ("BatchingParameters", "MonitoringConfig")
    return {
        n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{n}"))
        for n in names
    }


def parse(text: str, name: str):
    """A text-format message of TF Serving's `name` (BatchingParameters or MonitoringConfig).

    Raises:
      text_format.ParseError: what protobuf refuses (unknown field, wrong type), with line and
      column.
    """
    return text_format.Parse(text, _classes()[name]())
