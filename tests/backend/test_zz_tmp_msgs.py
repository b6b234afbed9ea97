import time, uuid
from pathlib import Path
import pytest
from tracelake.backend import open_backend
import sys
sys.path.insert(0, "/work/main/tests/backend")
from test_s3_errors import _operations, _s3, _closed_port, Flaky

def test_show(s3_endpoint, s3_auth_endpoint, http_stub, tmp_path):
    cases = {
        "auth": s3_auth_endpoint.storage_config(max_retries=0),
        "nobucket": s3_endpoint.storage_config(bucket="missing-x", max_retries=0),
        "closed": _s3(f"127.0.0.1:{_closed_port()}"),
        "missing-obj": s3_endpoint.storage_config(),
    }
    for label, cfg in cases.items():
        store = open_backend(cfg)
        for name, op in _operations(tmp_path).items():
            if label == "missing-obj" and name not in ("read", "size", "open_input_file", "read_range"):
                continue
            try:
                op(store); print(label, name, "OK")
            except Exception as e:
                print(f"{label:10} {name:16} {type(e).__name__}: {e}")
    script = Flaky(http_stub.s3_error(503, "SlowDown", "slow"))
    proxy = http_stub.start(script, upstream=s3_endpoint.url)
    store = open_backend(s3_endpoint.storage_config(endpoint=proxy.endpoint, insecure=True, max_retries=3))
    for name, op in [("write", lambda: store.write("t/k", b"v")), ("read", lambda: store.read("t/k")), ("list", lambda: list(store.list())), ("open", lambda: store.open_input_file("t/k").read())]:
        script.arm(2); t=time.monotonic(); op(); print(name, "with 2x503", round(time.monotonic()-t, 2))
