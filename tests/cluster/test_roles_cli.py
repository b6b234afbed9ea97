"""``tracelake <role>`` and ``target``: the commands exist, a wrong target is one clear error, and the
status document masks credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracelake.cli.main import EXIT_ERROR, build_parser, main
from tracelake.cli.roles import targets
from tracelake.config import load_config
from tracelake.service import MASK, masked_config


def test_every_role_is_a_command_and_a_target() -> None:
    assert targets() == ["all", "compactor", "distributor", "ingester", "querier", "query-frontend"]
    parser = build_parser()
    for command in ("serve", "distributor", "ingester", "querier", "query-frontend", "compactor"):
        assert parser.parse_args([command]).command == command


def test_an_unknown_target_is_refused_with_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "tracelake.yaml"
    config.write_text("target: scalable-single-binary\n")
    assert main(["--config", str(config), "serve"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert (
        "scalable-single-binary" in err
        and "all, compactor, distributor, ingester, querier, query-frontend" in err
    )


def test_ring_keys_load_and_secrets_are_masked(tmp_path: Path) -> None:
    config = tmp_path / "tracelake.yaml"
    config.write_text(
        "ingester:\n  lifecycler:\n    ring:\n      replication_factor: 3\n"
        "      members: [a:9095, dns+b.svc:9095]\n"
        "storage:\n  trace:\n    s3:\n      access_key: AKIAEXAMPLE\n      secret_key: hunter2\n"
    )
    cfg = load_config(config)
    assert cfg.ingester.lifecycler.ring.replication_factor == 3
    assert cfg.ingester.lifecycler.ring.members == ["a:9095", "dns+b.svc:9095"]
    assert cfg.unknown_keys() == []
    shown = masked_config(cfg)
    assert shown["storage"]["trace"]["s3"]["secret_key"] == MASK
    assert shown["storage"]["trace"]["s3"]["access_key"] == MASK
    assert shown["ingester"]["lifecycler"]["ring"]["members"] == ["a:9095", "dns+b.svc:9095"]


def test_a_replication_factor_below_one_is_a_config_error(tmp_path: Path) -> None:
    from tracelake.errors import ConfigError

    config = tmp_path / "tracelake.yaml"
    config.write_text("ingester:\n  lifecycler:\n    ring:\n      replication_factor: 0\n")
    with pytest.raises(ConfigError, match="replication_factor"):
        load_config(config)


@pytest.mark.parametrize("role", ["ingester", "distributor"])
def test_a_role_that_flushed_everything_exits_through_the_interpreter(tmp_path: Path, role: str) -> None:
    """SIGTERM after a complete flush ends as a normal interpreter exit (atexit handlers run: coverage
    and profilers write their files); only a stuck block write may leave with ``os._exit``."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    import yaml

    from tests.conftest import free_port

    api, grpc_port = free_port(), free_port()
    config = tmp_path / "role.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {
                    "http_listen_address": "127.0.0.1",
                    "http_listen_port": api,
                    "grpc_listen_port": grpc_port,
                },
                "distributor": {
                    "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{free_port()}"}}}}
                },
                "ingester": {"lifecycler": {"ring": {"members": [f"127.0.0.1:{grpc_port}"]}}},
                "storage": {
                    "trace": {
                        "local": {"path": str(tmp_path / "blocks")},
                        "wal": {"path": str(tmp_path / "wal")},
                    }
                },
            }
        )
    )
    marker = tmp_path / "atexit-ran"
    code = (
        f"import atexit, sys; atexit.register(lambda: open({str(marker)!r}, 'w').close()); "
        f"from tracelake.cli.main import main; sys.exit(main(['--config', {str(config)!r}, {role!r}]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{api}/ready", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert marker.exists()
