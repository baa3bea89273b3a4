"""The example deployment (compose.yaml) is safe by default: checked by reading it, since
no container engine runs here. No guest user, no broker or Redis port published, nothing
published beyond loopback, every secret required from `.env` and none written in the
file, and what compose would hand each service makes valid ragbus settings. Its RabbitMQ
is a cluster of three nodes that every ragbus process knows. scripts/check-compose runs
the file for real where Docker runs, and says it skipped where it does not."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from ragbus.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
CHECK = ROOT / "scripts" / "check-compose"
CLUSTER_CONF = ROOT / "deploy" / "rabbitmq-cluster.conf"

SECRET_VARIABLES = {
    "RABBITMQ_PASSWORD",
    "RABBITMQ_ERLANG_COOKIE",
    "REDIS_PASSWORD",
    "GATEWAY_TOKEN",
    "GRAFANA_ADMIN_PASSWORD",
}
RABBITMQ_NODES = ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3")
RAGBUS_SERVICES = ("retrieve", "generate", "gateway")
#: Started only with ``--profile observability``.
OBSERVABILITY = ("prometheus", "grafana")
DEPLOY = ROOT / "deploy"
LOOPBACK = {"127.0.0.1", "::1", "[::1]", "localhost"}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}; $$ escapes.
_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


class MissingVariable(Exception):
    pass


def interpolate(value: str, env: dict[str, str]) -> str:
    """``value`` as compose interpolates it with ``env``."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        empty = current is None or (op is not None and op.startswith(":") and current == "")
        if op in {":?", "?"} and empty:
            raise MissingVariable(f"{name}: {arg}")
        if op in {":-", "-"} and empty:
            return arg
        return current or ""

    return _VARIABLE.sub(one, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def example_env() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_the_system_is_all_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {*RABBITMQ_NODES, "redis", *RAGBUS_SERVICES, *OBSERVABILITY}
    for name, service in services.items():
        expected = ["observability"] if name in OBSERVABILITY else None
        assert service.get("profiles") == expected, name
    for name in RAGBUS_SERVICES:
        for needed in (*RABBITMQ_NODES, "redis"):
            assert services[name]["depends_on"][needed]["condition"] == "service_healthy"
    assert "healthcheck" in services["redis"]
    assert all("healthcheck" in services[node] for node in RABBITMQ_NODES)


def test_rabbitmq_is_a_cluster_of_three_nodes_that_find_each_other(
    services: dict[str, dict[str, Any]],
) -> None:
    conf = dict(
        line.split(" = ", 1)
        for line in CLUSTER_CONF.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert conf["cluster_formation.peer_discovery_backend"] == "classic_config"
    listed = {v for k, v in conf.items() if k.startswith("cluster_formation.classic_config.nodes.")}
    assert listed == {f"rabbit@{node}" for node in RABBITMQ_NODES}
    volumes = set()
    for node in RABBITMQ_NODES:
        service = services[node]
        assert service["hostname"] == node  # its node name is rabbit@<hostname>
        mounts = service["volumes"]
        assert any(
            m.startswith("./deploy/rabbitmq-cluster.conf:/etc/rabbitmq/conf.d/") for m in mounts
        )
        data = [m.split(":")[0] for m in mounts if m.endswith(":/var/lib/rabbitmq")]
        volumes.update(data)
        # one cookie for all, from .env, written to the cookie file before the node starts
        assert environment(service)["ERLANG_COOKIE"].startswith("${RABBITMQ_ERLANG_COOKIE:?")
        assert ".erlang.cookie" in " ".join(service["command"])
    assert len(volumes) == len(RABBITMQ_NODES)  # each node keeps its own data
    for node in RABBITMQ_NODES[1:]:  # the first node forms the cluster, the others join
        assert services[node]["depends_on"]["rabbitmq-1"]["condition"] == "service_healthy"


def test_every_ragbus_process_knows_every_node(services: dict[str, dict[str, Any]]) -> None:
    env = {**example_env(), "RABBITMQ_PASSWORD": "a1b2c3", "RABBITMQ_ERLANG_COOKIE": "c"}
    env.update(REDIS_PASSWORD="d4e5f6", GATEWAY_TOKEN="g7h8i9")
    for name in RAGBUS_SERVICES:
        url = interpolate(environment(services[name])["RAGBUS_AMQP_URL"], env)
        hosts = [urlsplit(node).hostname for node in url.split(",")]
        assert hosts == list(RABBITMQ_NODES), name


def test_the_check_script_skips_cleanly_without_a_docker_engine(tmp_path: Path) -> None:
    """Where no Docker engine answers (here), scripts/check-compose says so and exits 0;
    where one does, it runs the deployment (see the script)."""
    if shutil.which("docker") is not None:
        engine = subprocess.run(["docker", "info"], capture_output=True, timeout=60)
        if engine.returncode == 0:
            pytest.skip("a Docker engine runs here: scripts/check-compose runs for real")
    result = subprocess.run([str(CHECK)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.strip().splitlines()
    assert line.startswith("skipped: ") and "Docker" in line, line


def test_no_guest_user_anywhere() -> None:
    assert "guest" not in COMPOSE.read_text().lower()


def test_nothing_is_published_beyond_loopback_and_no_broker_or_redis_port_at_all(
    services: dict[str, dict[str, Any]],
) -> None:
    published: list[tuple[str, str, str]] = []
    for name, service in services.items():
        for port in service.get("ports", []):
            if isinstance(port, dict):  # the long syntax
                host_ip = str(port.get("host_ip", ""))
                target = str(port["target"])
            else:
                host_ip, _, rest = str(port).rpartition(":")
                host_ip, _, _ = host_ip.rpartition(":")  # host_ip:published:target
                target = rest.split("/")[0]
            published.append((name, host_ip, target))
    assert published, "the gateway should be reachable from this machine"
    for name, host_ip, target in published:
        assert host_ip in LOOPBACK, f"{name} publishes {target} on all interfaces"
        assert target not in {"5672", "5671", "6379"}, f"{name} publishes {target}"
    assert ("gateway", "127.0.0.1", "8000") in published


def test_every_secret_is_required_from_the_env_file_and_none_is_written_here(
    services: dict[str, dict[str, Any]],
) -> None:
    text = COMPOSE.read_text()
    for variable in SECRET_VARIABLES:
        uses = re.findall(rf"\$\{{{variable}(:?[-?]?)", text)
        assert uses and set(uses) == {":?"}, f"{variable} must be required (${{{variable}:?...}})"
    for name, service in services.items():
        for key, value in environment(service).items():
            if key.endswith("_URL"):
                password = urlsplit(value.replace("${", "").replace("}", "")).password
                assert password is None or "PASSWORD" in password, f"{name}: {key}"
            if key.endswith(("_PASS", "_PASSWORD", "_COOKIE", "_API_TOKEN", "_API_KEY")):
                assert value.startswith("${") and ":?" in value, f"{name}: {key} is a literal"


def test_the_gateway_requires_a_token(services: dict[str, dict[str, Any]]) -> None:
    token = environment(services["gateway"])["RAGBUS_API_TOKEN"]
    with pytest.raises(MissingVariable, match="GATEWAY_TOKEN"):
        interpolate(token, {})
    assert interpolate(token, {"GATEWAY_TOKEN": "t0ken"}) == "t0ken"


def test_redis_takes_its_password_off_the_command_line(
    services: dict[str, dict[str, Any]],
) -> None:
    command = " ".join(services["redis"]["command"])
    assert "requirepass" in command and "redis-server -" in command
    assert "--requirepass" not in command
    assert "REDISCLI_AUTH" in " ".join(services["redis"]["healthcheck"]["test"])


def test_every_variable_is_explained_in_the_example_env_file() -> None:
    used = {m["name"] for m in _VARIABLE.finditer(COMPOSE.read_text()) if m["name"]}
    used.discard("OPENAI_API_KEY")  # only in the commented real-LM lines
    assert used <= set(example_env()), used - set(example_env())
    assert all(example_env()[name] == "" for name in SECRET_VARIABLES)  # no shared default


def test_compose_refuses_to_start_without_the_secrets(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in (*RABBITMQ_NODES, "redis", *RAGBUS_SERVICES):
        with pytest.raises(MissingVariable):
            for value in environment(services[name]).values():
                interpolate(value, example_env())


def test_what_compose_hands_the_services_makes_valid_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    env = {**example_env(), "RABBITMQ_PASSWORD": "a1b2c3", "REDIS_PASSWORD": "d4e5f6"}
    env.update(GATEWAY_TOKEN="g7h8i9", RABBITMQ_ERLANG_COOKIE="c00k1e")
    for node in RABBITMQ_NODES:
        broker = environment(services[node])
        assert interpolate(broker["RABBITMQ_DEFAULT_USER"], env) == "ragbus"
        assert interpolate(broker["ERLANG_COOKIE"], env) == "c00k1e"
    for name in RAGBUS_SERVICES:
        values = {k: interpolate(v, env) for k, v in environment(services[name]).items()}
        fields = {
            key.removeprefix("RAGBUS_").lower(): value
            for key, value in values.items()
            if key.startswith("RAGBUS_")
        }
        settings = Settings(_env_file=None, **fields)  # type: ignore[arg-type]
        assert settings.amqp_url.get_secret_value() == ",".join(
            f"amqp://ragbus:a1b2c3@{node}:5672/" for node in RABBITMQ_NODES
        )
        assert settings.quorum_initial_group_size == len(RABBITMQ_NODES)
        assert settings.cache_url is not None
        assert settings.cache_url.get_secret_value() == "redis://:d4e5f6@redis:6379/0"
        if name == "gateway":
            assert settings.api_token is not None
            assert settings.api_token.get_secret_value() == "g7h8i9"


def mounts(service: dict[str, Any]) -> dict[Path, str]:
    """The files and folders of this repository a service mounts, and where."""
    found = {}
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if source.startswith("./"):
            found[(ROOT / source).resolve()] = rest.split(":")[0]
    return found


def test_prometheus_scrapes_every_worker_and_the_gateway_with_its_token(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    prometheus = services["prometheus"]
    config_path = DEPLOY / "prometheus" / "prometheus.yml"
    assert mounts(prometheus)[config_path] == "/etc/prometheus/prometheus.yml"
    jobs = {
        job["job_name"]: job for job in yaml.safe_load(config_path.read_text())["scrape_configs"]
    }
    [workers] = jobs["ragbus-workers"]["dns_sd_configs"]
    assert set(workers["names"]) == {"retrieve", "generate"} and workers["port"] == 9100
    for name in workers["names"]:
        assert services[name]["command"][0] == "worker"
        assert "0.0.0.0" in services[name]["command"], f"{name}'s ops port is reachable"
    gateway = jobs["ragbus-gateway"]
    [static] = gateway["static_configs"]
    assert static["targets"] == ["gateway:8000"]
    # the token reaches Prometheus as a compose secret, read from GATEWAY_TOKEN
    assert gateway["authorization"]["credentials_file"] == "/run/secrets/gateway_token"
    assert prometheus["secrets"] == ["gateway_token"]
    assert compose["secrets"]["gateway_token"] == {"environment": "GATEWAY_TOKEN"}


def test_grafana_loads_the_dashboard_from_prometheus(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = mounts(services["grafana"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert grafana[provisioning] == "/etc/grafana/provisioning"
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090" and source["type"] == "prometheus"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "ragbus.yml").read_text())[
        "providers"
    ]
    dashboards = DEPLOY / "grafana" / "dashboards"
    assert grafana[dashboards] == provider["options"]["path"]
    dashboard = json.loads((dashboards / "ragbus.json").read_text())
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
