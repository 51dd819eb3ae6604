"""deploy/kubernetes: the manifest's probes and timings agree with the server it starts."""

from __future__ import annotations

from pathlib import Path

import yaml

from sharedsock.cli import build_parser, given_options
from sharedsock.config import build_config

MANIFEST = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes" / "sharedsock.yaml"


def _docs():
    return list(yaml.safe_load_all(MANIFEST.read_text()))


def _config(container):
    args = build_parser().parse_args(container["command"][1:])
    return build_config(("command line", given_options(args)))


def _container():
    docs = _docs()
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"], deployment["spec"]["template"]["spec"]["containers"][0]


def test_the_command_is_a_valid_sharedsock_command_line():
    _, container = _container()
    assert container["command"][0] == "sharedsock"
    args = build_parser().parse_args(container["command"][1:])
    config = build_config(("command line", given_options(args)))
    assert args.app == "myproject.wsgi:application"
    assert config.metrics_bind == "0.0.0.0:9101" and config.shutdown_delay > 0


def test_probes_hit_the_masters_endpoints_on_the_metrics_port():
    pod, container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = build_parser().parse_args(container["command"][1:])
    config = build_config(("command line", given_options(args)))
    assert ports["metrics"] == int(config.metrics_bind.rsplit(":", 1)[1])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "metrics"
    # SIGKILL must not cut the drain short.
    assert pod["terminationGracePeriodSeconds"] > config.shutdown_delay + config.graceful_timeout


def test_readiness_fails_before_the_workers_drain_and_no_prestop_hook_is_needed():
    pod, container = _container()
    config = _config(container)
    probe = container["readinessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] < config.shutdown_delay
    # --shutdown-delay replaces the `preStop: sleep` hook.
    assert "lifecycle" not in container


def test_the_service_selects_the_deployments_pods_and_targets_the_http_port():
    docs = _docs()
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    _, container = _container()
    config = _config(container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    target = service["spec"]["ports"][0]["targetPort"]
    assert ports[target] == int(config.bind[0].rsplit(":", 1)[1])
    # A rolling update keeps every old pod until its replacement is ready.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
