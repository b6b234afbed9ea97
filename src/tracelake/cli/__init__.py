"""The ``tracelake`` command line."""
