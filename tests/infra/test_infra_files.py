"""The deployment files parse and keep the security defaults (they cannot be started here:
no Docker engine and no Kubernetes cluster)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"


def _load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_compose_ports_are_loopback_only_and_services_healthchecked() -> None:
    compose = _load_all(INFRA / "compose.yaml")[0]
    services = compose["services"]
    assert {
        "postgres",
        "minio",
        "mlflow",
        "prefect-server",
        "prefect-worker",
        "ray-head",
        "ray-worker",
    } <= set(services)
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    for name in ("postgres", "minio", "mlflow", "prefect-server", "ray-head"):
        assert "healthcheck" in services[name], f"{name} has no health check"


def test_compose_images_are_pinned_and_secrets_come_from_env() -> None:
    text = (INFRA / "compose.yaml").read_text()
    compose = _load_all(INFRA / "compose.yaml")[0]
    for name, svc in compose["services"].items():
        image = svc.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned image {image}"
    for key in ("POSTGRES_PASSWORD", "AWS_SECRET_ACCESS_KEY", "RAY_AUTH_TOKEN"):
        assert f"${{{key}:?" in text, f"{key} must come from the environment"
    # No literal secret values: every password/secret/token field is a ${...} reference.
    keys = re.finditer(r"^\s*([A-Z_]*(?:PASSWORD|SECRET|TOKEN)[A-Z_]*):\s*(\S+)", text, re.M)
    for match in keys:
        assert match.group(2).startswith("${"), f"literal secret in compose: {match.group(0)}"
    assert compose["services"]["ray-head"]["environment"]["RAY_AUTH_MODE"] == "token"


def test_kuberay_cluster_uses_token_auth_and_secret_refs() -> None:
    cluster = _load_all(INFRA / "kuberay" / "raycluster.yaml")[0]
    assert cluster["kind"] == "RayCluster"
    assert cluster["spec"]["rayVersion"] == "2.60.0"
    containers = [cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]]
    containers += [
        g["template"]["spec"]["containers"][0] for g in cluster["spec"]["workerGroupSpecs"]
    ]
    for container in containers:
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        for secret in ("RAY_AUTH_TOKEN", "AWS_SECRET_ACCESS_KEY"):
            assert "secretKeyRef" in env[secret]["valueFrom"], f"{secret} must come from a Secret"
    gpu = cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # Data and checkpoints come from S3: no node mounts a shared data volume.
    pods = [cluster["spec"]["headGroupSpec"]["template"]["spec"]]
    pods += [g["template"]["spec"] for g in cluster["spec"]["workerGroupSpecs"]]
    for pod in pods:
        for volume in pod.get("volumes", []):
            assert set(volume) <= {"name", "emptyDir"}, f"shared volume {volume['name']}"


def test_ray_launcher_and_dockerfile_pin_the_ray_version() -> None:
    launcher = _load_all(INFRA / "ray-launcher" / "aws.yaml")[0]
    assert launcher["provider"]["type"] == "aws"
    assert any("RAY_AUTH_MODE=token" in opt for opt in launcher["docker"]["run_options"])
    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    constraints = (INFRA.parent / "constraints.txt").read_text()
    ray_pin = re.search(r"^ray==(\S+)$", constraints, re.M).group(1)
    assert f"rayproject/ray:{ray_pin}-" in dockerfile, "base image must match the pinned ray"
    assert "-c constraints.txt" in dockerfile
