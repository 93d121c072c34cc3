"""The Helm chart renders (Helm 4 through helm-python-sdk) with several values files, and every manifest
validates strictly: the built-in kinds against the Kubernetes 1.31 schemas (kubernetes-validate), the
operators' custom resources against their CRDs' own schemas (custom_resources, crds/)."""

from __future__ import annotations

import json
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from cirasa.backends.kubernetes import KubernetesOptions
from cirasa.backends.kubernetes.naming import LABEL_MANAGED_BY, MANAGED_BY
from cirasa.common.settings import PlatformConfig, Settings
from tests.deploy import custom_resources
from tests.deploy.chart import (
    CHART,
    K8S_VERSION,
    NAMESPACE,
    ROOT,
    SERVICES,
    VALUES,
    by_kind,
    render,
    render_files,
)


def check_service_monitor(monitor: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    """Structure of a ServiceMonitor, and that it selects the services' metrics ports."""
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels"}
    selector = spec["selector"]["matchLabels"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in selector.items())
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= {
        "port",
        "path",
        "interval",
        "scrapeTimeout",
        "scheme",
        "honorLabels",
        "authorization",
    }
    assert endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True  # the metrics' own `service` label, not the Service's name
    selected = [
        s for s in by_kind(docs, "Service").values() if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert sorted(s["metadata"]["labels"]["app.kubernetes.io/component"] for s in selected) == sorted(
        SERVICES
    )
    for service in selected:
        assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]


@pytest.mark.parametrize("values", VALUES)
def test_every_manifest_validates_strictly(values: str) -> None:
    docs = render(values)
    assert docs
    for doc in docs:
        group = doc["apiVersion"].rpartition("/")[0]
        if "." in group and not group.endswith(".k8s.io"):
            # a custom resource (an operator's): kubernetes-validate ships only the built-in kinds
            problems = custom_resources.errors(doc)
            assert not problems, f"{doc['kind']}/{doc['metadata']['name']}:\n" + "\n".join(problems)
            if doc["kind"] == "ServiceMonitor":
                check_service_monitor(doc, docs)
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize("values", ["default", "production", "everything"])
def test_chart_lints_clean(values: str) -> None:
    report = helm.lint(CHART, VALUES[values], strict=True, kube_version=f"v{K8S_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_default_values() -> None:
    docs = render("default")
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Pod",  # the `helm test` hook
        "Service",
        "ServiceAccount",
    ]
    deployments = by_kind(docs, "Deployment")
    assert sorted(deployments) == sorted(f"cirasa-{s}" for s in SERVICES)
    assert sorted(by_kind(docs, "Service")) == sorted(deployments)
    for name, deployment in deployments.items():
        service = name.removeprefix("cirasa-")
        pod = deployment["spec"]["template"]["spec"]
        assert deployment["spec"]["replicas"] == 1
        assert pod["automountServiceAccountToken"] is False  # no platform needs the API here
        (container,) = pod["containers"]
        assert container["args"] == [service]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        env = {e["name"]: e for e in container["env"]}
        assert env["CIRASA_AMQP_URL"]["value"].startswith("amqp://")
        assert env["CIRASA_CONFIG"]["value"] == "/etc/cirasa/config.yaml"
    assert deployments["cirasa-scheduler"]["spec"]["strategy"] == {"type": "Recreate"}
    config = yaml.safe_load(by_kind(docs, "ConfigMap")["cirasa-config"]["data"]["config.yaml"])
    assert [PlatformConfig.model_validate(p).backend for p in config["platforms"]] == ["local"]
    settings = Settings.model_validate(config)  # every value the chart renders is a setting
    assert settings.gateway.quotas.active_jobs == 100 and settings.http_limits.header_timeout_s == 10
    assert by_kind(docs, "PersistentVolumeClaim")["cirasa-data"]["spec"]["resources"]["requests"] == {
        "storage": "10Gi"
    }


def test_production_values() -> None:
    docs = render("production")
    deployments = by_kind(docs, "Deployment")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert sorted(hpas) == ["cirasa-gateway", "cirasa-planner", "cirasa-scheduler"]
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert "replicas" not in deployments[name]["spec"]  # the HPA owns the count
    assert deployments["cirasa-monitor"]["spec"]["replicas"] == 2

    # secrets by reference only: no URL with credentials in the manifests
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["CIRASA_AMQP_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "cirasa-broker",
            "key": "amqp-url",
        }
        assert env["CIRASA_MONGODB_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "cirasa-mongodb",
            "key": "mongodb-url",
        }
        assert container["envFrom"] == [{"secretRef": {"name": "cirasa-oidc"}}]
        assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
        assert container["image"] == "registry.example.org/cirasa/cirasa:0.1.0"
        # only the services that manage Jobs get an API token
        manages = deployment["metadata"]["labels"]["app.kubernetes.io/component"] in ("scheduler", "monitor")
        assert pod["automountServiceAccountToken"] is manages
        assert pod["serviceAccountName"] == ("cirasa-job-manager" if manages else "cirasa")
        assert "prometheus.io/scrape" not in deployment["spec"]["template"]["metadata"]["annotations"]
    assert "password" not in json.dumps(docs).lower()

    # RBAC: exactly what the backend does with Jobs and pods, in the jobs' namespace
    (role,) = by_kind(docs, "Role").values()
    assert role["metadata"]["namespace"] == NAMESPACE
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("batch",), ("jobs",)): {"create", "get", "list", "watch", "patch", "delete"},
        (("",), ("pods",)): {"get", "list", "watch"},
    }
    (binding,) = by_kind(docs, "RoleBinding").values()
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "cirasa-job-manager", "namespace": NAMESPACE}
    ]
    accounts = by_kind(docs, "ServiceAccount")
    assert accounts["cirasa-job"]["automountServiceAccountToken"] is False

    # the platform's options are completed by the chart and accepted by the backend
    config = yaml.safe_load(by_kind(docs, "ConfigMap")["cirasa-config"]["data"]["config.yaml"])
    (platform,) = [PlatformConfig.model_validate(p) for p in config["platforms"]]
    options = KubernetesOptions.model_validate(platform.options)
    assert options.in_cluster and options.namespace == NAMESPACE
    assert options.data_pvc == "cirasa-data" and options.mount_path == "/data"
    assert options.runner_image == "registry.example.org/cirasa/cirasa:0.1.0"
    assert options.service_account == "cirasa-job"
    assert options.image_pull_secrets == ["registry-credentials"]
    assert options.ttl_seconds_after_finished == 3600
    assert options.run_as_user == 10001

    (monitor,) = by_kind(docs, "ServiceMonitor").values()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert by_kind(docs, "PersistentVolumeClaim")["cirasa-data"]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_minimal_values() -> None:
    docs = render("minimal")
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Deployment", "Service"]
    (deployment,) = by_kind(docs, "Deployment").values()
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "default"
    assert {"name": "data", "emptyDir": {}} in pod["volumes"]
    env = {e["name"] for e in pod["containers"][0]["env"]}
    assert "CIRASA_MONGODB_URL" not in env  # the in-memory store


def test_jobs_in_another_namespace_get_their_rbac_there() -> None:
    docs = render("jobs-in-another-namespace")
    (role,) = by_kind(docs, "Role").values()
    (binding,) = by_kind(docs, "RoleBinding").values()
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "cirasa-jobs"
    assert binding["subjects"][0]["namespace"] == NAMESPACE  # the services stay in the release namespace
    assert by_kind(docs, "ServiceAccount")["cirasa-job"]["metadata"]["namespace"] == "cirasa-jobs"
    config = yaml.safe_load(by_kind(docs, "ConfigMap")["cirasa-config"]["data"]["config.yaml"])
    options = KubernetesOptions.model_validate(config["platforms"][1]["options"])
    assert (options.namespace, options.data_pvc) == ("cirasa-jobs", "jobs-data")  # set values win


def test_job_pods_get_no_network_and_services_only_their_port() -> None:
    """Issue 9: job pods run user-chosen code; the policy selects them by the backend's own label."""
    docs = render("jobs-in-another-namespace")
    policies = {
        (d["metadata"].get("namespace", NAMESPACE), d["metadata"]["name"]): d
        for d in docs
        if d["kind"] == "NetworkPolicy"
    }
    jobs = policies[("cirasa-jobs", "cirasa-jobs-isolated")]["spec"]
    assert jobs["podSelector"]["matchLabels"] == {LABEL_MANAGED_BY: MANAGED_BY}
    assert jobs["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in jobs and "egress" not in jobs
    services = next(p["spec"] for (ns, name), p in policies.items() if name == "cirasa-services")
    assert services["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}]}]


def test_dashboard_configmap_is_the_repository_dashboard() -> None:
    source = ROOT / "deploy" / "grafana" / "dashboards" / "cirasa.json"
    copy = CHART / "dashboards" / "cirasa.json"
    assert copy.read_bytes() == source.read_bytes(), (
        f"the chart's copy of the dashboard is stale: cp {source.relative_to(ROOT)} {copy.relative_to(ROOT)}"
    )
    configmap = by_kind(render("default"), "ConfigMap")["cirasa-dashboard"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["cirasa.json"]) == json.loads(source.read_text())


def test_strict_validation_catches_a_misspelt_field() -> None:
    """values.schema.json leaves the Kubernetes objects passed through (affinity...) to their own schemas."""
    chart = helm.Chart.load(CHART)
    values: dict[str, Any] = {"affinity": {"podAntiAfinity": {}}}
    text = chart.render(values, name="cirasa", namespace=NAMESPACE)["cirasa/templates/deployment.yaml"]
    gateway = next(d for d in yaml.safe_load_all(text) if d and d["metadata"]["name"] == "cirasa-gateway")
    with pytest.raises(kubernetes_validate.ValidationError, match="podAntiAfinity"):
        kubernetes_validate.validate(gateway, K8S_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field_of_a_custom_resource() -> None:
    (scaled, *_) = by_kind(render("everything"), "ScaledObject").values()
    assert custom_resources.errors(scaled) == []
    bad = json.loads(json.dumps(scaled))
    bad["spec"]["triggers"][0]["metdata"] = bad["spec"]["triggers"][0].pop("metadata")
    bad["spec"]["minReplicaCount"] = bad["spec"]["maxReplicaCount"] + 1
    bad["metadata"]["lables"] = {}
    problems = "\n".join(custom_resources.errors(bad))
    assert "'metdata' was unexpected" in problems
    assert "minReplicaCount must be less than or equal to maxReplicaCount" in problems  # its CEL rule
    assert "'lables' was unexpected" in problems  # ObjectMeta, from the Kubernetes schemas
    unknown = {**scaled, "apiVersion": "keda.sh/v1beta9"}
    assert custom_resources.errors(unknown) == [
        "no schema vendored for ScaledObject keda.sh/v1beta9 in crds/"
    ]


def test_values_everything_switches_every_option_on() -> None:
    """values-everything.yaml leaves no template empty, so the strict validation above sees every kind."""
    files = render_files(VALUES["everything"])
    templates = sorted(p.relative_to(CHART).as_posix() for p in (CHART / "templates").rglob("*.yaml"))
    empty = [t for t in templates if not any(yaml.safe_load_all(files[f"cirasa/{t}"]))]
    assert not empty, f"templates values-everything.yaml does not use: {empty}"
    kinds = {d["kind"] for d in render("everything")}
    assert {"ScaledObject", "TriggerAuthentication", "PrometheusRule", "ServiceMonitor"} <= kinds
    assert {"RabbitmqCluster", "MongoDBCommunity", "Secret", "Pod", "Role", "NetworkPolicy"} <= kinds
    assert sorted(by_kind(render("everything"), "HorizontalPodAutoscaler")) == ["cirasa-all-gateway"]
