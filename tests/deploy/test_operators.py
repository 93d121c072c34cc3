"""What the chart asks of operators: RabbitMQ and MongoDB as the RabbitMQ Cluster Operator's and the
MongoDB Community Operator's custom resources (the services then use the Secrets those create), KEDA
scaling each service on the queues it really consumes (and no CPU HPA beside it), and the `helm test`
pod, run here against a live gateway."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from typing import Any

import helm_python as helm
import pytest

from cirasa.cli.runtime import SERVICES as SERVICE_CLASSES
from cirasa.common.bus import RabbitBus
from cirasa.common.settings import Settings
from cirasa.common.store import database_name
from cirasa.common.store.memory import memory_client
from tests.deploy import custom_resources
from tests.deploy.chart import CHART, SERVICES, VALUES, by_kind, chart, render, render_with
from tests.live import LiveGateway

KUBERNETES_PLATFORM = {
    "name": "cluster",
    "backend": "kubernetes",
    "cores": 64,
    "memory_gib": 256,
    "max_duration_s": 3600,
}


def env_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


def consumed_queues(exchange: str) -> dict[str, set[str]]:
    """The queues each service subscribes to, from the services' own code."""
    settings = Settings(exchange=exchange, platforms=[])
    queues = {}
    for name, cls in SERVICE_CLASSES.items():
        bus = RabbitBus(name, settings.amqp_url, settings.exchange)
        cls(settings, bus, memory_client()["chart-test"]).register()
        queues[name] = {sub.queue for sub in bus.subscriptions}
    return queues


# --- RabbitMQ and MongoDB through their operators ---------------------------------------------------


def test_rabbitmq_from_the_cluster_operator() -> None:
    docs = render_with({"rabbitmqCluster": {"enabled": True}})
    (cluster,) = by_kind(docs, "RabbitmqCluster").values()
    assert custom_resources.errors(cluster) == []
    assert cluster["metadata"]["name"] == "cirasa-rabbitmq" and cluster["spec"]["replicas"] == 1
    # the operator's Secret: <cluster>-default-user, key connection_string (amqp://user:pass@host:5672/)
    for deployment in by_kind(docs, "Deployment").values():
        url = env_of(deployment)["CIRASA_AMQP_URL"]
        assert url == {
            "name": "CIRASA_AMQP_URL",
            "valueFrom": {
                "secretKeyRef": {"name": "cirasa-rabbitmq-default-user", "key": "connection_string"}
            },
        }
    assert "guest" not in json.dumps(docs)  # rabbitmq.url is not used


def test_mongodb_from_the_community_operator() -> None:
    docs = render_with({"mongodbCommunity": {"enabled": True}, "config": {"db_prefix": "astro"}})
    (mongodb,) = by_kind(docs, "MongoDBCommunity").values()
    assert custom_resources.errors(mongodb) == []
    spec = mongodb["spec"]
    assert (spec["type"], spec["members"]) == ("ReplicaSet", 3)
    assert spec["security"]["authentication"]["modes"] == ["SCRAM"]
    (user,) = spec["users"]
    # read and write exactly the databases the services open
    settings = Settings(db_prefix="astro", platforms=[])
    assert sorted((r["name"], r["db"]) for r in user["roles"]) == sorted(
        ("readWrite", database_name(settings, s)) for s in SERVICES
    )
    # the password: a Secret the chart makes once and keeps
    password = by_kind(docs, "Secret")[user["passwordSecretRef"]["name"]]
    assert password["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(base64.b64decode(password["data"][user["passwordSecretRef"]["key"]])) == 32
    # the services read the connection string the operator writes for the user
    for deployment in by_kind(docs, "Deployment").values():
        ref = env_of(deployment)["CIRASA_MONGODB_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": user["connectionStringSecretName"], "key": "connectionString.standardSrv"}
    # what the operator merges into its StatefulSet (free-form in the CRD) is a valid StatefulSetSpec
    stateful = spec["statefulSet"]["spec"]
    assert custom_resources.partial_errors(stateful, "io.k8s.api.apps.v1.StatefulSetSpec") == []
    assert {t["metadata"]["name"] for t in stateful["volumeClaimTemplates"]} == {"data-volume", "logs-volume"}
    assert [c["name"] for c in stateful["template"]["spec"]["containers"]] == ["mongod"]


def test_mongodb_password_from_an_existing_secret() -> None:
    values = {"mongodbCommunity": {"enabled": True, "passwordSecret": {"name": "db-pass", "key": "pw"}}}
    docs = render_with(values)
    assert by_kind(docs, "Secret") == {}
    (mongodb,) = by_kind(docs, "MongoDBCommunity").values()
    assert mongodb["spec"]["users"][0]["passwordSecretRef"] == {"name": "db-pass", "key": "pw"}


def test_partial_validation_catches_a_misspelt_field() -> None:
    bad = {"volumeClaimTemplates": [{"metadata": {"name": "data-volume"}, "spec": {"storageClas": "x"}}]}
    (problem,) = custom_resources.partial_errors(bad, "io.k8s.api.apps.v1.StatefulSetSpec")
    assert "'storageClas' was unexpected" in problem


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"rabbitmqCluster": {"enabled": True}, "rabbitmq": {"existingSecret": {"name": "mine"}}},
            "leave rabbitmq.existingSecret.name empty",
        ),
        (
            {"mongodbCommunity": {"enabled": True}, "mongodb": {"existingSecret": {"name": "mine"}}},
            "leave mongodb.existingSecret.name empty",
        ),
    ],
)
def test_two_sources_for_one_url_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render_with(values)


# --- KEDA --------------------------------------------------------------------------------------------


def test_keda_scales_every_service_on_the_queues_it_consumes() -> None:
    docs = render("everything")
    exchange = VALUES["everything"]["config"]["exchange"]
    queues = consumed_queues(exchange)
    scaled = by_kind(docs, "ScaledObject")
    # every autoscaled service, but the gateway kept on its CPU HPA (autoscaling.keda: false)
    assert sorted(scaled) == sorted(f"cirasa-all-{s}" for s in SERVICES if s != "gateway")
    (auth,) = by_kind(docs, "TriggerAuthentication").values()
    (host,) = auth["spec"]["secretTargetRef"]
    deployments = by_kind(docs, "Deployment")
    merged = chart().merge_values(VALUES["everything"])  # with the defaults of values.yaml
    for name, so in scaled.items():
        service = name.removeprefix("cirasa-all-")
        spec = so["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert "replicas" not in deployments[name]["spec"]  # KEDA owns the count
        rabbit = [t for t in spec["triggers"] if t["type"] == "rabbitmq"]
        assert {t["metadata"]["queueName"] for t in rabbit} == queues[service], service
        for trigger in rabbit:
            assert trigger["metadata"]["mode"] == "QueueLength" and trigger["metadata"]["protocol"] == "amqp"
            assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        autoscaling = merged["services"][service]["autoscaling"]
        cpu = [t["metadata"]["value"] for t in spec["triggers"] if t["type"] == "cpu"]
        target = autoscaling.get("targetCPUUtilizationPercentage")
        assert cpu == ([str(target)] if target else []), service
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (
            autoscaling["minReplicas"],
            autoscaling["maxReplicas"],
        )
    assert scaled["cirasa-all-planner"]["spec"]["triggers"][0]["metadata"]["value"] == "20"  # its own
    assert scaled["cirasa-all-monitor"]["spec"]["triggers"][0]["metadata"]["value"] == "50"  # keda's
    # KEDA reads the queues with the URL the services use
    assert host["parameter"] == "host"
    ref = env_of(deployments["cirasa-all-planner"])["CIRASA_AMQP_URL"]["valueFrom"]["secretKeyRef"]
    assert {"name": host["name"], "key": host["key"]} == ref
    # two controllers on one Deployment fight: an HPA only where no ScaledObject is
    assert sorted(by_kind(docs, "HorizontalPodAutoscaler")) == ["cirasa-all-gateway"]
    assert "replicas" not in deployments["cirasa-all-gateway"]["spec"]


def test_the_chart_names_the_queues_the_code_declares() -> None:
    """The chart's list of consumed routing keys (templates/_helpers.tpl) against the default exchange."""
    values = json.loads(json.dumps(VALUES["production"]))
    values["keda"] = {"enabled": True}
    for service in SERVICES:
        values["services"].setdefault(service, {})["autoscaling"] = {"enabled": True}
    scaled = by_kind(render_with(values), "ScaledObject")
    queues = consumed_queues("cirasa.events")
    for service in SERVICES:
        triggers = scaled[f"cirasa-{service}"]["spec"]["triggers"]
        assert {t["metadata"]["queueName"] for t in triggers if t["type"] == "rabbitmq"} == queues[service]


def test_the_cpu_hpa_stays_the_fallback_without_keda() -> None:
    docs = render("production")
    assert by_kind(docs, "ScaledObject") == {} and by_kind(docs, "TriggerAuthentication") == {}
    assert sorted(by_kind(docs, "HorizontalPodAutoscaler")) == [
        "cirasa-gateway",
        "cirasa-planner",
        "cirasa-scheduler",
    ]
    values = {**VALUES["production"], "keda": {"enabled": True}}
    docs = render_with(values)
    assert sorted(by_kind(docs, "ScaledObject")) == ["cirasa-gateway", "cirasa-planner", "cirasa-scheduler"]
    assert by_kind(docs, "HorizontalPodAutoscaler") == {}
    deployments = by_kind(docs, "Deployment")
    assert deployments["cirasa-monitor"]["spec"]["replicas"] == 2  # not autoscaled: a fixed count, no KEDA


def test_keda_needs_the_amqp_url_in_a_secret() -> None:
    values = {"keda": {"enabled": True}, "services": {"gateway": {"autoscaling": {"enabled": True}}}}
    with pytest.raises(
        helm.HelmRenderError, match=re.escape("keda.enabled reads the AMQP URL from a Secret")
    ):
        render_with(values)


@pytest.mark.parametrize(
    "scheduler",
    [{"autoscaling": {"enabled": True}}, {"replicas": 2}],
    ids=["autoscaled", "two-replicas"],
)
@pytest.mark.parametrize("keda", [False, True])
def test_the_scheduler_of_a_local_platform_stays_single(scheduler: dict[str, Any], keda: bool) -> None:
    values: dict[str, Any] = {
        "rabbitmq": {"existingSecret": {"name": "broker"}},
        "keda": {"enabled": keda},
        "services": {"scheduler": scheduler},
    }
    with pytest.raises(helm.HelmRenderError, match=re.escape("services.scheduler must stay at one replica")):
        render_with(values)  # the default config has a local platform
    values["config"] = {"platforms": [KUBERNETES_PLATFORM]}
    kind = "ScaledObject" if keda and "autoscaling" in scheduler else "HorizontalPodAutoscaler"
    if "autoscaling" in scheduler:
        assert "cirasa-scheduler" in by_kind(render_with(values), kind)
    else:
        assert by_kind(render_with(values), "Deployment")["cirasa-scheduler"]["spec"]["replicas"] == 2


# --- helm test ---------------------------------------------------------------------------------------


def smoke_test_pod(values: str = "default") -> dict[str, Any]:
    (pod,) = by_kind(render(values), "Pod").values()
    return pod


def test_the_helm_test_pod() -> None:
    pod = smoke_test_pod()
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-c"]
    assert container["args"] == [(CHART / "files" / "smoke_test.py").read_text()]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CIRASA_TEST_URL"] == "http://cirasa-gateway:8000"  # the gateway's Service
    assert json.loads(env["CIRASA_TEST_JOB_INPUTS"]) == {"seconds": 1}
    assert spec["activeDeadlineSeconds"] > int(env["CIRASA_TEST_TIMEOUT_S"])
    # with OIDC on, a token from a Secret
    (container,) = smoke_test_pod("everything")["spec"]["containers"]
    token = next(e for e in container["env"] if e["name"] == "CIRASA_TEST_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "cirasa-test-token", "key": "token"}
    assert {e["name"]: e.get("value") for e in container["env"]}[
        "CIRASA_TEST_URL"
    ] == "http://cirasa-all-gateway:8080"
    assert by_kind(render("minimal"), "Pod") == {}  # helmTest.enabled false


def run_smoke_test(**overrides: str) -> subprocess.CompletedProcess[str]:
    """The pod's script, with the pod's environment but for ``overrides``, in a fresh interpreter."""
    (container,) = smoke_test_pod()["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update(overrides)
    command = [sys.executable, *container["command"][1:], *container["args"]]
    return subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=180, check=False
    )


def test_helm_test_passes_when_a_job_succeeds(live_gateway: LiveGateway) -> None:
    done = run_smoke_test(CIRASA_TEST_URL=live_gateway.url, CIRASA_TEST_TIMEOUT_S="120")
    assert done.returncode == 0, done.stderr
    assert "helm test passed: job " in done.stdout and "reached SUCCESS" in done.stdout


def test_helm_test_fails_with_the_jobs_state_when_it_fails(live_gateway: LiveGateway) -> None:
    inputs = json.dumps({"seconds": 0.1, "exit-code": 3})
    done = run_smoke_test(
        CIRASA_TEST_URL=live_gateway.url, CIRASA_TEST_TIMEOUT_S="120", CIRASA_TEST_JOB_INPUTS=inputs
    )
    assert done.returncode == 1
    assert "helm test FAILED: job " in done.stderr and "ended FAILURE" in done.stderr


def test_helm_test_fails_when_the_api_refuses_the_job(live_gateway: LiveGateway) -> None:
    done = run_smoke_test(CIRASA_TEST_URL=live_gateway.url, CIRASA_TEST_APP="no-such-app")
    assert done.returncode == 1
    assert "helm test FAILED: POST /caesar/api/v1.0/job answered HTTP 400" in done.stderr


def test_helm_test_fails_when_no_gateway_answers() -> None:
    done = run_smoke_test(CIRASA_TEST_URL="http://127.0.0.1:9", CIRASA_TEST_TIMEOUT_S="1")
    assert done.returncode == 1
    assert "helm test FAILED: the gateway never became ready: cannot reach the gateway" in done.stderr


def test_the_readme_lists_the_queues_the_code_declares() -> None:
    readme = (CHART / "README.md").read_text()
    rows = dict(
        re.findall(r"^\| (gateway|planner|scheduler|monitor|accounting) \| ([a-z_., ]+) \|$", readme, re.M)
    )
    queues = consumed_queues("x")
    assert {s: {f"x.{s}.{k.strip()}" for k in keys.split(",")} for s, keys in rows.items()} == queues
