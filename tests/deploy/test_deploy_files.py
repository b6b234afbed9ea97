"""deploy/ is what users copy: the compose file and the Kubernetes manifests must start the roles that
exist, with a configuration every role accepts, wired to each other. Checked here without a container
engine (and with ``docker compose config`` where the tool is installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tracelake.cli.main import build_parser
from tracelake.config import Config, load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ROLES = {"distributor", "ingester", "querier", "query-frontend", "compactor"}


def _commands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # the subcommands argparse knows
    return set(sub.choices)


def _load(text: str, env: dict[str, str], tmp_path: Path) -> Config:
    path = tmp_path / "tracelake.yaml"
    path.write_text(text)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return load_config(str(path))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("dns+").rpartition(":")
    return host, int(port)


# ------------------------------------------------------------------------------------------ compose


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _tracelake_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if s.get("image") == "tracelake:local"}


def test_compose_runs_every_role_with_known_commands(compose) -> None:
    services = _tracelake_services(compose)
    roles = [s["command"][0] for s in services.values()]
    assert set(roles) >= ROLES
    assert roles.count("ingester") == 3 and roles.count("querier") == 2
    assert set(roles) <= _commands()
    assert {"minio", "minio-init", "grafana", "loadgen"} <= set(compose["services"])


def test_compose_config_is_accepted_and_wired(compose, tmp_path) -> None:
    services = _tracelake_services(compose)
    env = next(iter(services.values()))["environment"]
    cfg = _load((DEPLOY / "tracelake.yaml").read_text(), env, tmp_path)
    assert cfg.unknown_keys() == []
    assert cfg.storage.trace.s3.secret_key == env["MINIO_ROOT_PASSWORD"]
    assert _host_port(cfg.storage.trace.s3.endpoint)[0] in compose["services"]
    by_role = {}
    for name, service in services.items():
        by_role.setdefault(service["command"][0], []).append(name)
    ring = cfg.ingester.lifecycler.ring
    assert sorted(_host_port(m)[0] for m in ring.members) == sorted(by_role["ingester"])
    assert {_host_port(m)[1] for m in ring.members} == {cfg.server.grpc_listen_port}
    assert ring.replication_factor == 3
    queriers = cfg.query_frontend.querier_addresses
    assert sorted(_host_port(q)[0] for q in queriers) == sorted(by_role["querier"])
    assert {_host_port(q)[1] for q in queriers} == {cfg.server.http_listen_port}
    wal = [
        v
        for name in by_role["ingester"]
        for v in services[name]["volumes"]
        if v.endswith(":/var/tracelake/wal")
    ]
    assert len(set(wal)) == 3 and all(v.split(":")[0] in compose["volumes"] for v in wal)  # a WAL each


def test_grafana_points_at_the_frontend(compose, tmp_path) -> None:
    provisioning = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/tracelake.yaml").read_text())
    (source,) = provisioning["datasources"]
    assert source["type"] == "tempo"
    url = urlparse(source["url"])
    frontend = _tracelake_services(compose)[url.hostname]
    assert frontend["command"] == ["query-frontend"]
    assert url.port == 3200


def test_docker_compose_validates_the_file() -> None:
    for tool in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(tool[0]) and subprocess.run([*tool, "version"], capture_output=True).returncode == 0:
            result = subprocess.run(
                [*tool, "-f", str(DEPLOY / "docker-compose.yml"), "config", "-q"],
                capture_output=True,
                text=True,
            )
            assert result.returncode == 0, result.stderr
            return
    pytest.skip(
        "neither `docker compose` nor `docker-compose` is installed (.ci/run installs docker-compose)"
    )


# ------------------------------------------------------------------------------------------ kubernetes


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes/tracelake.yaml").read_text()) if d]


def _workloads(manifests: list[dict]) -> list[dict]:
    return [d for d in manifests if d["kind"] in ("Deployment", "StatefulSet")]


def test_manifests_are_well_formed(manifests) -> None:
    for doc in manifests:
        assert {"apiVersion", "kind", "metadata"} <= set(doc)
        assert doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "tracelake"
    names = [(d["kind"], d["metadata"]["name"]) for d in manifests]
    assert len(names) == len(set(names))


def test_workloads_run_known_roles_with_consistent_labels_ports_and_volumes(manifests) -> None:
    commands = _commands()
    roles = set()
    for workload in _workloads(manifests):
        spec = workload["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        (container,) = spec["template"]["spec"]["containers"]
        assert container["args"][0] in commands
        roles.add(container["args"][0])
        ports = {p["name"] for p in container["ports"]}
        assert container["readinessProbe"]["httpGet"]["port"] in ports
        volumes = {v["name"] for v in spec["template"]["spec"].get("volumes", [])}
        volumes |= {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
        assert {m["name"] for m in container["volumeMounts"]} <= volumes
    assert roles == ROLES


def test_services_select_workloads_and_their_ports(manifests, tmp_path) -> None:
    workloads = _workloads(manifests)
    services = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "Service"}
    for service in services.values():
        selected = [
            w
            for w in workloads
            if service["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, service["metadata"]["name"]
        ports = {p["name"] for w in selected for p in w["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    (ingesters,) = [w for w in workloads if w["kind"] == "StatefulSet"]
    assert services[ingesters["spec"]["serviceName"]]["spec"].get("clusterIP") == "None"

    (config_map,) = [d for d in manifests if d["kind"] == "ConfigMap"]
    cfg = _load(config_map["data"]["tracelake.yaml"], {"S3_ACCESS_KEY": "a", "S3_SECRET_KEY": "b"}, tmp_path)
    assert cfg.unknown_keys() == []
    for address in [*cfg.ingester.lifecycler.ring.members, *cfg.query_frontend.querier_addresses]:
        host, port = _host_port(address)
        assert address.startswith("dns+") and services[host]["spec"].get("clusterIP") == "None"
        assert port in {p["port"] for p in services[host]["spec"]["ports"]}
