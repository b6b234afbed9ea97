"""Which role a server process runs: ``target`` (Tempo's ``-target``), found through the
``tracelake.roles`` entry point so that the command line never imports a service."""

from __future__ import annotations

from importlib.metadata import entry_points

from tracelake.config import Config
from tracelake.errors import ConfigError


def targets() -> list[str]:
    return sorted(e.name for e in entry_points(group="tracelake.roles"))


def run_role(cfg: Config, target: str | None = None) -> int:
    """Run ``target`` (default: the config's ``target``) until it is stopped."""
    target = target or cfg.target
    roles = {e.name: e for e in entry_points(group="tracelake.roles")}
    if target not in roles:
        raise ConfigError(f"target {target!r} is not one of {', '.join(sorted(roles))}")
    cfg.target = target
    return roles[target].load()(cfg)
