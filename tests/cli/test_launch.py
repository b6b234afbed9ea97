"""The ``tracelake`` console script chooses Arrow's memory pool before pyarrow loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tracelake.cli.launch import ARROW_POOL_VARIABLE, arrow_pool_for

# A child runs the console script's main with ``--help`` (argparse exits before any command runs, so
# nothing but the launcher can have chosen the pool), then prints the pool Arrow loaded with.
_CHILD = """
import sys
from tracelake.cli import launch
assert "pyarrow" not in sys.modules, "the launcher must run before pyarrow loads"
sys.argv = ["tracelake", *sys.argv[1:]]
try:
    launch.main()
except SystemExit:
    pass
import pyarrow as pa
print(pa.default_memory_pool().backend_name)
"""


def _pool_after(args: list[str], env_pool: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != ARROW_POOL_VARIABLE}
    if env_pool is not None:
        env[ARROW_POOL_VARIABLE] = env_pool
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _wheel_default() -> str:
    env = {k: v for k, v in os.environ.items() if k != ARROW_POOL_VARIABLE}
    code = "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def test_compactor_commands_load_arrow_with_jemalloc_and_others_keep_the_default() -> None:
    try:
        import pyarrow as pa

        pa.jemalloc_memory_pool()
    except NotImplementedError:
        pytest.skip("this pyarrow is built without jemalloc")
    assert _pool_after(["--config", "x.yaml", "compact", "--help"]) == "jemalloc"
    assert _pool_after(["compactor", "--help"]) == "jemalloc"
    assert _pool_after(["blocks", "--help"]) == _wheel_default()


def test_the_users_own_pool_choice_wins() -> None:
    assert _pool_after(["compact", "--help"], env_pool="system") == "system"


def test_which_command_lines_pick_jemalloc() -> None:
    assert arrow_pool_for(["--config", "c.yaml", "compact"]) == "jemalloc"
    assert arrow_pool_for(["compactor"]) == "jemalloc"
    assert arrow_pool_for(["serve"]) is None
    assert arrow_pool_for(["query-frontend", "--config", "c.yaml"]) is None
