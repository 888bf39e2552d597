"""The production overlay (deploy/k8s/overlays/production), rendered by the built-in kustomize of the
pinned kubectl (.venv-ops): the processes the distributed mode runs, probes, replicas, autoscalers,
disruption budgets, resources from the measured memory, Secrets referenced and never inlined, each
service's migrations before it starts; then kubernetes-validate --strict and checkov on the rendered
manifests."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.supervisor import SERVICES

from .conftest import OPS_BIN, REPO_ROOT, tool
from .distributed import Deployed, compare

pytestmark = pytest.mark.ops

OVERLAY = REPO_ROOT / "deploy" / "k8s" / "overlays" / "production"
SHOP_PROCESSES = (*SERVICES, "gateway")
# The newest Kubernetes minor whose schemas kubernetes-validate 1.37 ships.
KUBERNETES_VERSION = "1.37.0"
# Peak RSS per process measured by `make bench` (README), MB.
PEAK_RSS_MB = {"auth": 200, "payments": 125, "orders": 120, "catalog": 110, "gateway": 85}
AUTOSCALED = ("gateway", "orders", "catalog")
# Which Deployments may reference each Secret key.
SECRET_READERS = {
    **{(f"shop-{s}", f"SHOP_DB_PASSWORD_{s.upper()}"): {s} for s in SERVICES},
    ("shop-broker", "SHOP_AMQP_URL"): set(SERVICES),
    ("shop-common", "SHOP_INTERNAL_TOKEN"): set(SHOP_PROCESSES),
    ("shop-common", "SHOP_JWT_PUBLIC_KEY"): set(SHOP_PROCESSES),
    ("shop-auth", "SHOP_JWT_PRIVATE_KEY"): {"auth"},
    ("shop-auth", "SHOP_ADMIN_PASSWORD"): {"auth"},
    **{
        ("shop-payments", key): {"payments"}
        for key in (
            "STRIPE_SECRET_KEY",
            "STRIPE_WEBHOOK_SECRET",
            "BKASH_APP_KEY",
            "BKASH_APP_SECRET",
            "BKASH_USERNAME",
            "BKASH_PASSWORD",
        )
    },
}
# Checks skipped by an annotation on each Deployment, each with its reason there.
JUSTIFIED_SKIPS = {"CKV_K8S_35", "CKV_K8S_43"}


def render() -> str:
    kubectl = tool(OPS_BIN / "kubectl")
    result = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def rendered() -> str:
    return render()


@pytest.fixture(scope="module")
def rendered_file(rendered: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("k8s") / "production.yaml"
    path.write_text(rendered)
    return path


@pytest.fixture(scope="module")
def objects(rendered: str) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for document in yaml.safe_load_all(rendered):
        if document:
            found[(document["kind"], document["metadata"]["name"])] = document
    return found


def kinds(objects: dict[tuple[str, str], dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {name: obj for (k, name), obj in objects.items() if k == kind}


def config_data(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    (config,) = [o for name, o in kinds(objects, "ConfigMap").items() if name.startswith("shop-config")]
    data: dict[str, str] = config["data"]
    return data


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    return main  # type: ignore[no-any-return]


def environment(spec: dict[str, Any], config: dict[str, str]) -> dict[str, str | None]:
    env: dict[str, str | None] = {}
    for source in spec.get("envFrom", []):
        assert source["configMapRef"]["name"].startswith("shop-config")
        env.update(config)
    for item in spec.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def deployed(deployment: dict[str, Any], config: dict[str, str]) -> Deployed:
    main = container(deployment)
    ports = [p["containerPort"] for p in main.get("ports", [])]
    probe = main.get("readinessProbe", {}).get("httpGet", {})
    ready_path = probe.get("path") if probe.get("port") in ("http", *ports) else None
    return Deployed(
        main.get("command", []) + main.get("args", []),
        ports[0] if len(ports) == 1 else None,
        ready_path,
        environment(main, config),
    )


def test_deployments_run_the_supervisors_processes(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployments = kinds(objects, "Deployment")
    assert set(deployments) == set(SHOP_PROCESSES)
    config = config_data(objects)
    for name in SHOP_PROCESSES:
        assert compare(name, deployed(deployments[name], config), production=True) == [], name
        assert container(deployments[name])["livenessProbe"]["httpGet"]["path"] == "/healthz"
        service = objects[("Service", name)]
        assert service["spec"]["ports"] == [
            {"name": "http", "port": deployed(deployments[name], config).port, "targetPort": "http"}
        ]


def test_the_comparison_fails_on_a_drifted_deployment(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    config = config_data(objects)
    drifted = copy.deepcopy(objects[("Deployment", "orders")])
    container(drifted)["command"][-1] = "8013"
    container(drifted)["readinessProbe"]["httpGet"]["path"] = "/healthz"
    problems = compare("orders", deployed(drifted, config), production=True)
    assert any(p.startswith("orders: command") for p in problems), problems
    assert any("health check asks /healthz" in p for p in problems), problems
    unwired = {**config, "SHOP_CATALOG_URL": "http://catalog:8003"}
    problems = compare("orders", deployed(objects[("Deployment", "orders")], unwired), production=True)
    assert any("SHOP_CATALOG_URL='http://catalog:8003'" in p for p in problems), problems


def test_replicas_autoscalers_and_disruption_budgets(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployments = kinds(objects, "Deployment")
    autoscalers = kinds(objects, "HorizontalPodAutoscaler")
    assert set(autoscalers) == set(AUTOSCALED)
    for name in SHOP_PROCESSES:
        spec = deployments[name]["spec"]
        if name in AUTOSCALED:
            # Left to the autoscaler: a replica count here would be reset by every apply.
            assert "replicas" not in spec
            hpa = autoscalers[name]["spec"]
            assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
            assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
        else:
            assert spec["replicas"] >= 2
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        budget = objects[("PodDisruptionBudget", name)]["spec"]
        assert budget["minAvailable"] == 1
        labels = spec["template"]["metadata"]["labels"]
        assert budget["selector"]["matchLabels"].items() <= labels.items()


def test_resources_follow_the_measured_memory(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    def mebibytes(quantity: str) -> int:
        assert quantity.endswith("Mi"), quantity
        return int(quantity[:-2])

    for name, deployment in kinds(objects, "Deployment").items():
        for spec in [container(deployment), *deployment["spec"]["template"]["spec"].get("initContainers", [])]:
            resources = spec["resources"]
            assert mebibytes(resources["requests"]["memory"]) * 1.048576 >= PEAK_RSS_MB[name], (name, resources)
            assert mebibytes(resources["limits"]["memory"]) >= 1.5 * PEAK_RSS_MB[name], (name, resources)
            assert resources["requests"]["cpu"] and resources["limits"]["cpu"]


def test_secrets_are_referenced_never_inlined_and_reach_only_their_service(
    objects: dict[tuple[str, str], dict[str, Any]], rendered: str
) -> None:
    assert kinds(objects, "Secret") == {}
    assert "stringData" not in rendered
    readers: dict[tuple[str, str], set[str]] = {}
    for name, deployment in kinds(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        for spec in [*pod.get("initContainers", []), *pod["containers"]]:
            for item in spec.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] == item["name"]
                    readers.setdefault((ref["name"], ref["key"]), set()).add(name)
    assert readers == SECRET_READERS
    # No secret is in the ConfigMap either: its values are addresses and names.
    config = config_data(objects)
    assert not any(word in key for key in config for word in ("PASSWORD", "SECRET", "TOKEN", "KEY"))
    assert "@" not in config["SHOP_AMQP_URL"] and "@" not in config["SHOP_DATABASE_URL"]


def test_each_service_migrates_first_as_its_own_role(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    from shopkit.provision import SERVICES as MIGRATED

    deployments = kinds(objects, "Deployment")
    for name in SHOP_PROCESSES:
        inits = deployments[name]["spec"]["template"]["spec"].get("initContainers", [])
        if name == "gateway":
            assert inits == []
            continue
        (migrate,) = inits
        assert migrate["command"] == ["python", "-m", "shopkit.migrate", "upgrade", name] and name in MIGRATED
        assert migrate["image"] == container(deployments[name])["image"]
        passwords = [e["name"] for e in migrate["env"] if e["name"].startswith("SHOP_DB_PASSWORD_")]
        assert passwords == [f"SHOP_DB_PASSWORD_{name.upper()}"]


def test_postgres_and_rabbitmq_are_the_operators(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    workloads = {name for (kind, name) in objects if kind in ("Deployment", "StatefulSet", "DaemonSet")}
    assert workloads == set(SHOP_PROCESSES)
    config = config_data(objects)
    assert config["SHOP_DATABASE_URL"].startswith("postgresql://") and config["SHOP_AMQP_URL"].startswith("amqp")


def test_pods_run_restricted(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    namespace = objects[("Namespace", "shop")]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, deployment in kinds(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
        for spec in [*pod.get("initContainers", []), *pod["containers"]]:
            context = spec["securityContext"]
            assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"], name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert ":" in spec["image"] and not spec["image"].endswith(":latest"), name


def test_kubernetes_validate_strict(rendered_file: Path, tmp_path: Path) -> None:
    validate = tool(OPS_BIN / "kubernetes-validate")
    command = [validate, "--strict", "--kubernetes-version", KUBERNETES_VERSION, str(rendered_file)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # --strict refuses a field the schema does not know (a misspelt probe would otherwise be ignored).
    typo = tmp_path / "typo.yaml"
    typo.write_text(rendered_file.read_text().replace("readinessProbe:", "readynessProbe:", 1))
    result = subprocess.run([*command[:-1], str(typo)], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "readynessProbe" in result.stdout + result.stderr


# Scanned beside ours, so a run that checked nothing cannot pass: checkov must fail these.
CARELESS_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: careless
spec:
  containers:
    - name: app
      image: example/app:latest
      securityContext:
        privileged: true
"""
CARELESS_DOCKERFILE = "FROM python:latest\nCOPY . /app\nCMD python /app/main.py\n"


def failures_in(report: dict[str, Any], path: Path) -> list[str]:
    return [c["check_id"] for c in report["results"]["failed_checks"] if c["file_abs_path"] == str(path)]


@pytest.fixture(scope="module")
def careless(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("careless")
    (folder / "pod.yaml").write_text(CARELESS_POD)
    (folder / "Dockerfile").write_text(CARELESS_DOCKERFILE)
    return folder / "pod.yaml", folder / "Dockerfile"


@pytest.fixture(scope="module")
def checkov_reports(rendered_file: Path, careless: tuple[Path, Path]) -> dict[str, dict[str, Any]]:
    """One checkov run (it takes a while to start) over the rendered manifests, the Dockerfile and the
    careless samples."""
    binary = tool(OPS_BIN / "checkov")
    command = [binary, "--file", str(rendered_file), "--file", str(REPO_ROOT / "docker" / "service.Dockerfile")]
    command += ["--file", str(careless[0]), "--file", str(careless[1])]
    command += ["--framework", "kubernetes", "dockerfile", "--output", "json", "--skip-download"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.stdout.strip(), result.stderr
    reports = json.loads(result.stdout)
    return {report["check_type"]: report for report in (reports if isinstance(reports, list) else [reports])}


def test_checkov_passes_the_rendered_manifests_with_only_justified_skips(
    checkov_reports: dict[str, dict[str, Any]], rendered_file: Path, careless: tuple[Path, Path]
) -> None:
    report = checkov_reports["kubernetes"]
    assert failures_in(report, rendered_file) == []
    assert {"CKV_K8S_16", "CKV_K8S_8", "CKV_K8S_14"} <= set(failures_in(report, careless[0]))
    assert len(report["results"]["failed_checks"]) == len(failures_in(report, careless[0]))
    assert report["summary"]["passed"] > 0
    skipped = report["results"]["skipped_checks"]
    assert {c["check_id"] for c in skipped} == JUSTIFIED_SKIPS
    assert all(c["check_result"]["suppress_comment"] for c in skipped)


def test_checkov_passes_the_image(checkov_reports: dict[str, dict[str, Any]], careless: tuple[Path, Path]) -> None:
    report = checkov_reports["dockerfile"]
    assert failures_in(report, REPO_ROOT / "docker" / "service.Dockerfile") == []
    assert {"CKV_DOCKER_2", "CKV_DOCKER_3", "CKV_DOCKER_7"} <= set(failures_in(report, careless[1]))
    assert len(report["results"]["failed_checks"]) == len(failures_in(report, careless[1]))
    assert report["summary"]["passed"] > 0 and report["summary"]["skipped"] == 0
