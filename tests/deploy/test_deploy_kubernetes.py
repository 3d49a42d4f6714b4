"""deploy/k8s built with kustomize (kubectl's), validated against the Kubernetes schemas that
kubernetes-validate ships (offline, strict: no unknown field), and held to the contract: commands exist,
probes ask real paths or ping the right Celery node, every setting named is real and in .env.example, the
workers get their task time to stop, beat runs alone, selectors select, Redis persists and never evicts.
Built three ways: the base, the dev overlay, and the base with the optional components (the Prometheus
Operator's objects, whose CRD schemas are not shipped, are checked in test_deploy_monitoring.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy.support import (
    DEPLOY,
    command_problems,
    env_example,
    known_names,
    normalise,
    receiver_paths,
    simulator_paths,
    walk,
    yaml_documents,
)
from receiver.app import WEBHOOK_PATH
from workers.settings import WorkerSettings

K8S = DEPLOY / "k8s"
# Name -> (what the build starts from, the components added to it as a user's overlay would add them).
BUILDS: dict[str, tuple[Path, tuple[str, ...]]] = {
    "base": (K8S / "base", ()),
    "dev": (K8S / "overlays" / "dev", ()),
    "base+components": (K8S / "base", ("prometheus-operator", "backlog-autoscaling", "admin-api")),
}
# The kinds of the Prometheus Operator's CRDs, which only the components add.
OPERATOR_KINDS = frozenset({"ServiceMonitor", "PodMonitor", "PrometheusRule"})
# The oldest Kubernetes the manifests are written for, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.27.0", kubernetes_validate.utils.latest_version())
TASK_TIME_LIMIT = float(WorkerSettings.model_fields["task_time_limit"].default)
SECRET = "smartcar-webhooks-secrets"
Manifest = dict[str, Any]


def kustomize(directory: Path) -> list[Manifest]:
    """`kubectl kustomize` (or a standalone `kustomize build`): the manifests as the cluster gets them."""
    if shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(directory)]
    elif shutil.which("kustomize"):
        command = ["kustomize", "build", str(directory)]
    else:
        pytest.fail("deploy/k8s is built with kustomize: install kubectl (apt-get install kubectl)")
    built = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert built.returncode == 0, built.stderr
    return [document for document in yaml.safe_load_all(built.stdout) if document]


def overlay(factory: pytest.TempPathFactory, resource: Path, components: tuple[str, ...]) -> Path:
    """A kustomization of `resource` plus `components` (deploy/k8s/components/<name>), in a directory of
    its own, as a user's overlay would be; `resource` itself when no component is added."""
    if not components:
        return resource
    directory = factory.mktemp("overlay")
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(resource, directory)],
        "components": [os.path.relpath(K8S / "components" / name, directory) for name in components],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


@pytest.fixture(scope="module", params=sorted(BUILDS))
def build(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, list[Manifest]]:
    return request.param, kustomize(overlay(tmp_path_factory, *BUILDS[request.param]))


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {item["metadata"]["name"]: item for item in manifests if item["kind"] == kind}


def pods(manifests: list[Manifest]) -> dict[str, Manifest]:
    """Workload name -> its pod template (Deployments and StatefulSets)."""
    found = {}
    for kind in ("Deployment", "StatefulSet"):
        for name, item in of_kind(manifests, kind).items():
            found[name] = item["spec"]["template"]
    return found


def containers(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for name, template in pods(manifests).items():
        for container in template["spec"]["containers"]:
            yield name, container


def ours(container: Manifest) -> bool:
    return "smartcar-webhooks" in container["image"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def selected(selector: dict[str, str], manifests: list[Manifest]) -> list[str]:
    """The workloads whose pods `selector` selects."""
    return [
        name
        for name, template in pods(manifests).items()
        if selects(selector, template["metadata"]["labels"])
    ]


def test_every_build_validates_against_the_kubernetes_schemas(build: tuple[str, list[Manifest]]) -> None:
    name, manifests = build
    assert manifests
    operator = [item for item in manifests if item["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {item["kind"] for item in operator} == (OPERATOR_KINDS if BUILDS[name][1] else set())
    for version in KUBERNETES_VERSIONS:
        for item in manifests:
            if item not in operator:
                kubernetes_validate.validate(item, version, strict=True)


def test_the_example_secret_validates_and_names_every_key_the_pods_read(
    build: tuple[str, list[Manifest]],
) -> None:
    [secret] = yaml_documents(K8S / "secret.example.yaml")
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(secret, version, strict=True)
    assert secret["metadata"]["name"] == SECRET
    assert set(secret["stringData"].values()) == {""}, "the example holds no value"
    _name, manifests = build
    wanted = {
        node["secretKeyRef"]["key"]
        for node in walk(manifests)
        if isinstance(node, dict) and "secretKeyRef" in node
    }
    assert wanted <= set(secret["stringData"]), sorted(wanted - set(secret["stringData"]))
    names = {
        node["secretKeyRef"]["name"]
        for node in walk(manifests)
        if isinstance(node, dict) and "secretKeyRef" in node
    }
    assert names == {SECRET}
    # No Secret is applied by the kustomization: an apply would overwrite the real values.
    assert not of_kind(manifests, "Secret")


def test_every_command_exists_and_every_setting_named_is_real(build: tuple[str, list[Manifest]]) -> None:
    _name, manifests = build
    for workload, container in containers(manifests):
        if not ours(container):
            continue
        if "command" in container:
            assert command_problems(list(container["command"])) == [], workload
        else:
            assert workload == "smartcar-receiver", f"{workload} runs the image's command (the receiver)"
        named = {variable["name"] for variable in container.get("env", [])}
        assert named <= known_names(), sorted(named - known_names())
        assert named <= set(env_example()), sorted(named - set(env_example()))
        assert container["resources"]["requests"].keys() >= {"cpu", "memory"}, workload
        assert container["resources"]["limits"]["memory"], workload
    for config in of_kind(manifests, "ConfigMap").values():
        if config["metadata"]["name"].startswith("smartcar-webhooks-settings"):
            assert set(config["data"]) <= known_names(), sorted(set(config["data"]) - known_names())
            assert set(config["data"]) <= set(env_example())
            assert config["data"]["SMARTCAR_ENV"] == "production"


def test_every_pod_runs_unprivileged(build: tuple[str, list[Manifest]]) -> None:
    _name, manifests = build
    for workload, template in pods(manifests).items():
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, workload
        assert spec["automountServiceAccountToken"] is False, workload
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, workload
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], workload


def test_the_receivers_probes_ask_its_health_paths_and_it_stops_gracefully(
    build: tuple[str, list[Manifest]],
) -> None:
    _name, manifests = build
    template = pods(manifests)["smartcar-receiver"]
    [container] = template["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in receiver_paths(), probe
    [pause] = container["lifecycle"]["preStop"]["exec"]["command"][1:]
    graceful = 20  # the image's --timeout-graceful-shutdown (test_deploy_files ties it to the Procfile)
    assert template["spec"]["terminationGracePeriodSeconds"] > float(pause) + graceful
    assert {port["name"] for port in container["ports"]} == {"http"}


def test_workers_and_beat_answer_a_ping_that_means_they_work(build: tuple[str, list[Manifest]]) -> None:
    _name, manifests = build
    found = pods(manifests)
    for workload, node in (("smartcar-worker", "celery"), ("smartcar-beat", "celerybeat")):
        [container] = found[workload]["spec"]["containers"]
        probe = container["livenessProbe"]["exec"]["command"]
        assert probe[:2] == ["sh", "-c"]
        words = normalise(probe[2])
        assert command_problems(words) == [], workload
        assert words[3:7] == ["inspect", "ping", "-d", f"{node}@$HOSTNAME"], workload
    [beat] = found["smartcar-beat"]["spec"]["containers"]
    assert "--enable-remote-control" in beat["command"]


def test_workers_get_their_task_time_limit_to_stop_and_beat_runs_alone(
    build: tuple[str, list[Manifest]],
) -> None:
    _name, manifests = build
    deployments = of_kind(manifests, "Deployment")
    worker = deployments["smartcar-worker"]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > TASK_TIME_LIMIT
    beat = deployments["smartcar-beat"]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"] == {"type": "Recreate"}
    scaled = {
        hpa["spec"]["scaleTargetRef"]["name"]
        for hpa in of_kind(manifests, "HorizontalPodAutoscaler").values()
    }
    assert "smartcar-beat" not in scaled
    [container] = beat["template"]["spec"]["containers"]
    schedule = container["command"][container["command"].index("--schedule") + 1]
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert str(Path(schedule).parent) in mounts, "beat's schedule lives on a volume of its own"


def test_selectors_select_and_references_resolve(build: tuple[str, list[Manifest]]) -> None:
    _name, manifests = build
    labels = {name: template["metadata"]["labels"] for name, template in pods(manifests).items()}
    workloads = {**of_kind(manifests, "Deployment"), **of_kind(manifests, "StatefulSet")}
    for name, item in workloads.items():
        assert selects(item["spec"]["selector"]["matchLabels"], labels[name]), name
    for name, service in of_kind(manifests, "Service").items():
        chosen = selected(service["spec"]["selector"], manifests)
        assert len(chosen) == 1, f"Service {name} selects {chosen}"
        ports = {
            port["name"] for container in pods(manifests)[chosen[0]]["spec"]["containers"]
            for port in container.get("ports", [])
        }  # fmt: skip
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports, name
    for name, budget in of_kind(manifests, "PodDisruptionBudget").items():
        chosen = selected(budget["spec"]["selector"]["matchLabels"], manifests)
        assert len(chosen) == 1, f"PodDisruptionBudget {name} selects {chosen}"
    for name, hpa in of_kind(manifests, "HorizontalPodAutoscaler").items():
        assert hpa["spec"]["scaleTargetRef"]["name"] in workloads, name
    for config in (node for node in walk(manifests) if isinstance(node, dict) and "configMapRef" in node):
        assert config["configMapRef"]["name"] in of_kind(manifests, "ConfigMap")
    statefulsets = of_kind(manifests, "StatefulSet")
    for statefulset in statefulsets.values():
        assert statefulset["spec"]["serviceName"] in of_kind(manifests, "Service")


def test_the_ingress_publishes_only_the_webhook_over_tls(build: tuple[str, list[Manifest]]) -> None:
    _name, manifests = build
    [ingress] = of_kind(manifests, "Ingress").values()
    [tls] = ingress["spec"]["tls"]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] in tls["hosts"]
    assert tls["secretName"]
    [path] = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == (WEBHOOK_PATH, "Exact")
    assert path["path"] in receiver_paths()
    backend = path["backend"]["service"]
    service = of_kind(manifests, "Service")[backend["name"]]
    assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}


def test_redis_persists_every_write_never_evicts_and_admits_only_our_pods(
    build: tuple[str, list[Manifest]],
) -> None:
    _name, manifests = build
    text = of_kind(manifests, "ConfigMap")["smartcar-redis-config"]["data"]["redis.conf"]
    conf = dict(line.split(" ", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["maxmemory"]
    redis = of_kind(manifests, "StatefulSet")["smartcar-redis"]["spec"]
    [claim] = redis["volumeClaimTemplates"]
    [container] = redis["template"]["spec"]["containers"]
    assert {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}[
        claim["metadata"]["name"]
    ] == conf["dir"]
    [policy] = of_kind(manifests, "NetworkPolicy").values()
    assert selects(policy["spec"]["podSelector"]["matchLabels"], redis["template"]["metadata"]["labels"])
    [admitted] = policy["spec"]["ingress"][0]["from"]
    users = [
        name
        for name, template in pods(manifests).items()
        if any(ours(container) for container in template["spec"]["containers"])
        and name != "smartcar-simulator"
    ]
    assert set(users) <= set(selected(admitted["podSelector"]["matchLabels"], manifests))


def test_the_dev_overlay_adds_the_simulator_and_points_the_services_at_it() -> None:
    manifests = kustomize(K8S / "overlays" / "dev")
    template = pods(manifests)["smartcar-simulator"]
    [container] = template["spec"]["containers"]
    assert command_problems(list(container["command"])) == []
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in simulator_paths()
    [settings] = [
        config["data"]
        for name, config in of_kind(manifests, "ConfigMap").items()
        if name.startswith("smartcar-webhooks-settings")
    ]
    port = next(port for port in of_kind(manifests, "Service")["smartcar-simulator"]["spec"]["ports"])
    simulator = f"http://smartcar-simulator:{port['port']}"
    assert settings["SMARTCAR_API_ORIGIN"] == simulator
    assert settings["SMARTCAR_AUTH_ORIGIN"] == f"{simulator}/oauth/token"
    url = container["command"][container["command"].index("--webhook-url") + 1]
    assert url == f"http://smartcar-receiver{WEBHOOK_PATH}"
    assert {item["metadata"].get("namespace") for item in manifests} == {"smartcar-dev"}


def test_the_service_monitor_scrapes_the_receivers_metrics() -> None:
    [monitor] = yaml_documents(K8S / "components" / "prometheus-operator" / "servicemonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = of_kind(kustomize(K8S / "base"), "Service")["smartcar-receiver"]
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["path"] in receiver_paths()
    component = yaml_documents(K8S / "components" / "prometheus-operator" / "kustomization.yaml")[0]
    assert component["kind"] == "Component"
    assert component["resources"] == ["servicemonitor.yaml", "podmonitor.yaml", "../../../monitoring"]


def test_the_admin_api_is_its_own_optional_workload_never_behind_the_ingress(
    build: tuple[str, list[Manifest]],
) -> None:
    """components/admin-api only: its own pods and ClusterIP Service, probed on the listener's /healthz,
    reading ADMIN_TOKEN from the Secret; the receiver's Service and Ingress never lead to it."""
    name, manifests = build
    found = pods(manifests)
    if "admin-api" not in BUILDS[name][1]:
        assert "smartcar-admin-api" not in found
        return
    [container] = found["smartcar-admin-api"]["spec"]["containers"]
    assert container["command"] == ["smartcar-admin-api"]
    assert {probe: container[probe]["httpGet"]["path"] for probe in ("livenessProbe", "readinessProbe")} == {
        "livenessProbe": "/healthz",
        "readinessProbe": "/healthz",
    }
    secrets = {
        variable["name"]: variable["valueFrom"]["secretKeyRef"]["key"]
        for variable in container["env"]
        if "valueFrom" in variable
    }
    assert secrets["ADMIN_TOKEN"] == "ADMIN_TOKEN"
    service = of_kind(manifests, "Service")["smartcar-admin-api"]
    assert service["spec"]["type"] == "ClusterIP"
    assert selected(service["spec"]["selector"], manifests) == ["smartcar-admin-api"]
    assert selected(of_kind(manifests, "Service")["smartcar-receiver"]["spec"]["selector"], manifests) == [
        "smartcar-receiver"
    ]
    [ingress] = of_kind(manifests, "Ingress").values()
    backends = {path["backend"]["service"]["name"] for path in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert backends == {"smartcar-receiver"}
