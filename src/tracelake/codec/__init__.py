"""Codecs between OTLP (protobuf wire format) and the flat span table."""
