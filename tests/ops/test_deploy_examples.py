"""The deploy recipes in examples/deploy say what appserver accepts and agree with each other:
every APPSERVER_* setting they give passes `appserver check`, the Kubernetes probes ask the
paths the container serves, and each grace period outlasts the drain it must cover."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml  # type: ignore[import-untyped]

from appserver.config.units import parse_duration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "examples" / "deploy"


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The example app stands in for the recipes' myproject.asgi:app; systemd:NAME needs systemd.
    env = {**env, "APPSERVER_APP": "examples.hello:app"}
    if env.get("APPSERVER_BIND", "").startswith("systemd"):
        env["APPSERVER_BIND"] = "127.0.0.1:0"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APPSERVER_")}
    return subprocess.run(
        [sys.executable, "-m", "appserver", "check", "--import-app"],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def dockerfile_env() -> dict[str, str]:
    text = (DEPLOY / "Dockerfile").read_text()
    block = re.search(r"^ENV (.*?)(?=^\S)", text, re.S | re.M)
    assert block is not None
    return dict(re.findall(r"(APPSERVER_[A-Z_]+)=(\S+)", block.group(1)))


def kubernetes() -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load((DEPLOY / "kubernetes.yaml").read_text())
    return loaded


def test_the_dockerfile_settings_pass_check() -> None:
    env = dockerfile_env()
    assert env["APPSERVER_HEALTH_PATH"] == "/healthz"
    done = check(env)
    assert done.returncode == 0, done.stderr


def test_the_kubernetes_probes_and_grace_period_match_the_settings() -> None:
    spec = kubernetes()["spec"]["template"]["spec"]  # type: ignore[index]
    [container] = spec["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    done = check(env)
    assert done.returncode == 0, done.stderr
    assert container["livenessProbe"]["httpGet"]["path"] == env["APPSERVER_HEALTH_PATH"]
    assert container["readinessProbe"]["httpGet"]["path"] == env["APPSERVER_READINESS_PATH"]
    drain = parse_duration(env["APPSERVER_TIMEOUT_SHUTDOWN_DELAY"]) + parse_duration(
        env["APPSERVER_TIMEOUT_GRACEFUL_SHUTDOWN"]
    )
    assert spec["terminationGracePeriodSeconds"] > drain


def test_the_systemd_units_match() -> None:
    service = (DEPLOY / "appserver.service").read_text()
    socket_unit = (DEPLOY / "appserver.socket").read_text()
    env = dict(re.findall(r"^Environment=(APPSERVER_[A-Z_]+)=(\S+)$", service, re.M))
    name = re.search(r"^FileDescriptorName=(\S+)$", socket_unit, re.M)
    assert name is not None and env["APPSERVER_BIND"] == f"systemd:{name.group(1)}"
    stop = re.search(r"^TimeoutStopSec=(\d+)$", service, re.M)
    assert stop is not None
    assert int(stop.group(1)) > parse_duration(env["APPSERVER_TIMEOUT_GRACEFUL_SHUTDOWN"])
    done = check(env)
    assert done.returncode == 0, done.stderr
