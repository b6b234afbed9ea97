"""OTLP trace data: OTLP/JSON <-> protobuf, and reading import files in any common layout."""

from tracelake.otlp.files import DEFAULT_BATCH_BYTES, iter_otlp_file
from tracelake.otlp.json_codec import otlp_json_to_request, request_to_otlp_json

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "iter_otlp_file",
    "otlp_json_to_request",
    "request_to_otlp_json",
]
