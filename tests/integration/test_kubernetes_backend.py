"""The Kubernetes backend against a fake API server speaking batch/v1 and core/v1 JSON (tests/fakes)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cirasa.backends.base import (
    BackendStatus,
    BackendUnavailable,
    JobSpec,
    TrackedJob,
)
from cirasa.backends.factory import CONTAINER_BACKENDS, make_backend
from cirasa.backends.kubernetes import KubernetesBackend, job_name, label_value
from cirasa.common.events import JobState, Resources
from cirasa.common.settings import PlatformConfig, Settings
from tests.fakes.kube_api import FakeKubeApi

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def kube() -> Iterator[FakeKubeApi]:
    server = FakeKubeApi(token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def ns() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kubeconfig(tmp_path: Path, kube: FakeKubeApi, ns: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
  - name: fake
    cluster: {{server: "{kube.url}"}}
users:
  - name: tester
    user: {{token: {TOKEN}}}
contexts:
  - name: fake
    context: {{cluster: fake, user: tester, namespace: {ns}}}
current-context: fake
"""
    )
    return path


BackendMaker = Callable[..., KubernetesBackend]


@pytest.fixture
def make(tmp_path: Path, kubeconfig: Path) -> Iterator[BackendMaker]:
    made: list[KubernetesBackend] = []

    def factory(**options: Any) -> KubernetesBackend:
        opts: dict[str, Any] = {
            "kubeconfig": str(kubeconfig),
            "data_pvc": "cirasa-data",
            "mount_path": "/data",
            "service_root": str(tmp_path),
            "runner_image": "cirasa:test",
            "sync_timeout_s": 5,
            "request_timeout_s": 5,
            **options,
        }
        platform = PlatformConfig(
            name="k8s", backend="kubernetes", cores=8, memory_gib=16, max_duration_s=3600, options=opts
        )
        backend = KubernetesBackend(platform, Settings())
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        backend.close()


def _spec(tmp_path: Path, image: str | None = None, user: str = "ada.lovelace@example.org") -> JobSpec:
    job_id = uuid.uuid4().hex
    job_dir = tmp_path / "jobs" / "ada_lovelace_example_org" / f"job_{job_id}"
    image_path = tmp_path / "files" / "sky.fits"
    if image is None:
        argv = ["/venv/bin/python", "-m", "cirasa.finders.runners.sep", "--image", str(image_path)]
    else:
        argv = ["--seedthr=5", f"--inputfile={image_path}"]
    resources = Resources(cores=2, memory_gib=1.5, duration_s=600)
    return JobSpec(job_id, user, "sep" if image is None else "caesar", argv, job_dir, resources, image=image)


def _tracked(spec: JobSpec) -> TrackedJob:
    return TrackedJob(spec.job_id, job_name(spec.job_id), spec.job_dir)


def _wait(backend: KubernetesBackend, spec: JobSpec, check: Callable[[BackendStatus | None], bool]) -> Any:
    deadline = time.monotonic() + 10
    status: BackendStatus | None = None
    while time.monotonic() < deadline:
        status = backend.poll([_tracked(spec)])[spec.job_id]
        if check(status):
            return status
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting; last status {status}")


def _state(state: JobState) -> Callable[[BackendStatus | None], bool]:
    return lambda s: s is not None and s.state is state


def test_registered_as_a_container_backend(tmp_path: Path, kubeconfig: Path) -> None:
    assert "kubernetes" in CONTAINER_BACKENDS
    platform = PlatformConfig(
        name="k8s",
        backend="kubernetes",
        cores=4,
        memory_gib=8,
        max_duration_s=600,
        options={"kubeconfig": str(kubeconfig), "data_pvc": "data"},
    )
    backend = make_backend(platform, Settings())
    assert isinstance(backend, KubernetesBackend)
    backend.close()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({}, "data_pvc"),
        ({"data_pvc": "d", "namespace": "Not_A_Label"}, "DNS-1123"),
        ({"data_pvc": "d", "mount_path": "relative"}, "absolute"),
        ({"data_pvc": "d", "in_cluster": True, "kubeconfig": "/k"}, "in_cluster"),
        ({"data_pvc": "d", "unknown": 1}, "unknown"),
    ],
)
def test_options_are_validated(options: dict[str, Any], error: str) -> None:
    platform = PlatformConfig(
        name="k8s", backend="kubernetes", cores=1, memory_gib=1, max_duration_s=60, options=options
    )
    with pytest.raises(ValueError, match=error):
        KubernetesBackend(platform)


def test_names_and_labels() -> None:
    job_id = uuid.uuid4().hex
    assert job_name(job_id) == f"cirasa-{job_id}"
    assert job_name("f" * 64) == "cirasa-" + "f" * 40
    assert job_name("j1").startswith("cirasa-") and len(job_name("j1")) == 47
    assert label_value("ada") == "ada"
    user = label_value("ada.lovelace@example.org")
    assert user.startswith("ada.lovelace_example.org-") and len(user) <= 63
    assert label_value("x" * 100) != label_value("x" * 101)
    assert len(label_value("x" * 100)) <= 63


def test_submit_creates_a_guarded_job(make: BackendMaker, kube: FakeKubeApi, ns: str, tmp_path: Path) -> None:
    backend = make(runner_python="/usr/local/bin/python", ttl_seconds_after_finished=1800)
    spec = _spec(tmp_path)
    name = backend.submit(spec)
    assert name == f"cirasa-{spec.job_id}"
    assert spec.job_dir.is_dir()  # created on the shared volume before the pod needs it as its cwd
    job = kube.job(ns, name)
    assert job is not None  # and the fake validated it strictly against the 1.31 schemas
    meta, jspec = job["metadata"], job["spec"]
    assert meta["labels"]["cirasa.io/job-id"] == spec.job_id
    assert meta["labels"]["cirasa.io/platform"] == "k8s"
    assert meta["labels"]["cirasa.io/app"] == "sep"
    assert meta["labels"]["cirasa.io/user"] == label_value(spec.user)
    assert meta["annotations"]["cirasa.io/user"] == spec.user
    assert jspec["backoffLimit"] == 0
    assert jspec["activeDeadlineSeconds"] == 600
    assert jspec["ttlSecondsAfterFinished"] == 1800
    pod = jspec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "cirasa-data"}} in pod["volumes"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "1536Mi"}
    assert container["resources"]["limits"] == container["resources"]["requests"]
    assert container["image"] == "cirasa:test"
    pod_job_dir = f"/data/jobs/ada_lovelace_example_org/job_{spec.job_id}"
    assert container["workingDir"] == pod_job_dir
    assert container["command"] == [
        "/usr/local/bin/python", "-m", "cirasa.finders.runners.sep", "--image", "/data/files/sky.fits",
    ]  # fmt: skip
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "2"
    assert env["CIRASA_JOB_DIR"] == pod_job_dir
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    # the pod the "Job controller" made carries the labels the pod watch selects on
    (made,) = kube.pods(ns, name)
    assert made["metadata"]["labels"]["cirasa.io/platform"] == "k8s"


def test_container_app_runs_its_image(make: BackendMaker, kube: FakeKubeApi, ns: str, tmp_path: Path) -> None:
    backend = make()
    spec = _spec(tmp_path, image="sneumann/caesar-job:1.0")
    job = kube.job(ns, backend.submit(spec))
    assert job is not None
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "sneumann/caesar-job:1.0"
    assert "command" not in container  # the image's entrypoint does the work
    assert container["args"] == ["--seedthr=5", "--inputfile=/data/files/sky.fits"]


def test_job_dir_off_the_volume_is_refused(make: BackendMaker, kube: FakeKubeApi, ns: str) -> None:
    backend = make(service_root="/somewhere/else")
    with pytest.raises(ValueError, match="not on the data volume"):
        backend.submit(_spec(Path("/tmp/elsewhere")))
    assert kube.jobs(ns) == []


def test_duplicate_submit_creates_one_job(
    make: BackendMaker, kube: FakeKubeApi, ns: str, tmp_path: Path
) -> None:
    spec = _spec(tmp_path)
    replicas = [make(), make()]  # two scheduler replicas get the same redelivered JobSubmitted
    names: list[str] = []
    threads = [threading.Thread(target=lambda b=b: names.append(b.submit(spec))) for b in replicas * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names.append(replicas[0].submit(spec))
    assert len(set(names)) == 1 and len(names) == 5
    assert [j["metadata"]["name"] for j in kube.jobs(ns)] == names[:1]
    assert len(kube.calls("POST", f"/namespaces/{ns}/jobs")) == 5  # the other four got 409


def test_watch_follows_a_job_to_success(
    make: BackendMaker, kube: FakeKubeApi, ns: str, tmp_path: Path
) -> None:
    backend = make()
    spec = _spec(tmp_path)
    name = backend.submit(spec)
    pending = _wait(backend, spec, _state(JobState.PENDING))
    assert pending.status == "Job is starting (ContainerCreating)"
    kube.run(ns, name)
    running = _wait(backend, spec, _state(JobState.RUNNING))
    assert running.started_at is not None
    kube.succeed(ns, name)
    done = _wait(backend, spec, _state(JobState.SUCCESS))
    assert done.exit_code == 0 and done.finished_at is not None and done.elapsed_s >= 0
    assert done.started_at == running.started_at
    # state came from the watches: no GET of the Job, no list per poll
    assert kube.calls("GET", f"/jobs/{name}") == []
    watches = kube.calls("GET", f"/namespaces/{ns}/jobs", watch="True")
    assert watches and all(
        w.query["labelSelector"] == "app.kubernetes.io/managed-by=cirasa,cirasa.io/platform=k8s"
        for w in watches
    )


@pytest.mark.parametrize(
    ("break_it", "state", "exit_code", "words"),
    [
        (lambda k, ns, n: k.fail(ns, n, 137, "OOMKilled"), JobState.FAILURE, 137,
         ["ran out of memory", "1536Mi", "OOMKilled", "exit code 137"]),
        (lambda k, ns, n: k.fail(ns, n, 3, "Error", "reading sky.fits\nValueError: no WCS in header\n"),
         JobState.FAILURE, 3, ["return code 3", "ValueError: no WCS in header"]),
        (lambda k, ns, n: k.evict(ns, n), JobState.FAILURE, 137,
         ["evicted", "The node was low on resource: memory."]),
        (lambda k, ns, n: k.exceed_deadline(ns, n), JobState.TIMED_OUT, 124,
         ["wall-time limit of 600 s", "DeadlineExceeded"]),
    ],
    ids=["oom", "exit-code", "evicted", "deadline"],
)  # fmt: skip
def test_failures_say_why(
    make: BackendMaker,
    kube: FakeKubeApi,
    ns: str,
    tmp_path: Path,
    break_it: Callable[[FakeKubeApi, str, str], None],
    state: JobState,
    exit_code: int,
    words: list[str],
) -> None:
    backend = make()
    spec = _spec(tmp_path)
    name = backend.submit(spec)
    kube.run(ns, name)
    _wait(backend, spec, _state(JobState.RUNNING))
    break_it(kube, ns, name)
    status = _wait(backend, spec, lambda s: s is not None and s.state.is_terminal)
    assert status.state is state
    assert status.exit_code == exit_code
    for word in words:
        assert word in status.status
    assert status.started_at is not None and status.finished_at is not None


def test_image_pull_backoff_fails_the_job(
    make: BackendMaker, kube: FakeKubeApi, ns: str, tmp_path: Path
) -> None:
    backend = make(image_pull_grace_s=0.5)
    spec = _spec(tmp_path, image="registry.invalid/caesar:nope")
    name = backend.submit(spec)
    kube.waiting(ns, name, "ImagePullBackOff")
    retrying = _wait(backend, spec, lambda s: s is not None and "ImagePullBackOff" in s.status)
    assert retrying.state is JobState.PENDING and retrying.status.endswith("retrying")
    failed = _wait(backend, spec, _state(JobState.FAILURE))
    assert "Image registry.invalid/caesar:nope could not be pulled (ImagePullBackOff)" in failed.status
    assert failed.started_at is None  # it never ran
    # the backend stopped the Job instead of letting the kubelet retry until the deadline
    (delete,) = kube.calls("DELETE", f"/jobs/{name}")
    assert delete.body["propagationPolicy"] == "Background"
    assert kube.job(ns, name) is None
    assert backend.poll([_tracked(spec)])[spec.job_id] == failed


def test_unschedulable_job_waits_with_the_reason(
    make: BackendMaker, kube: FakeKubeApi, ns: str, tmp_path: Path
) -> None:
    backend = make()
    spec = _spec(tmp_path)
    name = backend.submit(spec)
    kube.unschedulable(ns, name, "0/3 nodes are available: 3 Insufficient cpu.")
    status = _wait(backend, spec, lambda s: s is not None and "node" in s.status)
    assert status.state is JobState.PENDING
    assert status.status == "Waiting for a node: 0/3 nodes are available: 3 Insufficient cpu."


def test_cancel_deletes_the_job(make: BackendMaker, kube: FakeKubeApi, ns: str, tmp_path: Path) -> None:
    scheduler, monitor = make(), make()  # cancel comes from one process, states are read in another
    spec = _spec(tmp_path)
    name = scheduler.submit(spec)
    kube.run(ns, name)
    _wait(monitor, spec, _state(JobState.RUNNING))
    scheduler.cancel(_tracked(spec))
    (delete,) = kube.calls("DELETE", f"/jobs/{name}")
    assert delete.body["propagationPolicy"] == "Background"
    assert kube.job(ns, name) is None and kube.pods(ns, name) == []
    canceled = _wait(monitor, spec, _state(JobState.CANCELED))
    assert canceled.status == "Job canceled by user" and canceled.exit_code == -1
    scheduler.cancel(_tracked(spec))  # again: nothing left to delete, no error


def test_finished_job_deleted_by_ttl_keeps_its_state(
    make: BackendMaker, kube: FakeKubeApi, ns: str, tmp_path: Path
) -> None:
    backend = make()
    spec = _spec(tmp_path)
    name = backend.submit(spec)
    kube.run(ns, name)
    kube.fail(ns, name, 2)
    failed = _wait(backend, spec, _state(JobState.FAILURE))
    kube.delete_job(ns, name, "Foreground")  # what the TTL-after-finished controller does: pods first
    deadline = time.monotonic() + 5
    while backend.jobs is not None and name in backend.jobs.objects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert backend.poll([_tracked(spec)])[spec.job_id] == failed
    assert failed.exit_code == 2


def test_vanished_job_polls_as_none(make: BackendMaker, kube: FakeKubeApi, ns: str, tmp_path: Path) -> None:
    backend = make()
    spec, never = _spec(tmp_path), _spec(tmp_path)
    name = backend.submit(spec)
    kube.run(ns, name)
    _wait(backend, spec, _state(JobState.RUNNING))
    kube.delete_job(ns, name)  # removed behind our back while it was running
    _wait(backend, spec, lambda s: s is None)
    assert backend.poll([_tracked(never)]) == {never.job_id: None}


def test_job_created_elsewhere_is_found_before_its_watch_event(
    make: BackendMaker, kube: FakeKubeApi, ns: str, tmp_path: Path
) -> None:
    monitor, scheduler = make(), make()
    first = _spec(tmp_path)
    scheduler.submit(first)
    _wait(monitor, first, _state(JobState.PENDING))  # the monitor's watches are running
    kube.hold_watches()
    spec = _spec(tmp_path)
    scheduler.submit(spec)  # the monitor's watch cannot have seen it yet

    def lists() -> int:
        return len([r for r in kube.calls("GET", f"/namespaces/{ns}/jobs") if "watch" not in r.query])

    before = lists()
    status = monitor.poll([_tracked(spec), _tracked(first)])
    found = status[spec.job_id]
    assert found is not None and found.state is JobState.PENDING  # not vanished
    assert lists() == before + 1  # one LIST confirmed it, no GET of the Job
    assert kube.calls("GET", f"/jobs/{job_name(spec.job_id)}") == []
    kube.release_watches()


def test_watch_resumes_from_its_resource_version(
    make: BackendMaker, kube: FakeKubeApi, ns: str, tmp_path: Path
) -> None:
    backend = make()
    spec = _spec(tmp_path)
    name = backend.submit(spec)
    _wait(backend, spec, _state(JobState.PENDING))
    assert backend.jobs is not None
    lists = backend.jobs.lists
    kube.close_watches()
    kube.run(ns, name)
    kube.succeed(ns, name)
    _wait(backend, spec, _state(JobState.SUCCESS))
    assert backend.jobs.lists == lists  # resumed, not re-listed
    resumed = kube.calls("GET", f"/namespaces/{ns}/jobs", watch="True")[-1]
    assert int(resumed.query["resourceVersion"]) > 0


def test_watch_resume_after_410_relists_and_loses_nothing(
    make: BackendMaker, kube: FakeKubeApi, ns: str, tmp_path: Path
) -> None:
    backend = make()
    done, gone, running = _spec(tmp_path), _spec(tmp_path), _spec(tmp_path)
    for spec in (done, gone, running):
        backend.submit(spec)
    statuses = backend.poll([_tracked(s) for s in (done, gone, running)])
    assert all(s is not None and s.state is JobState.PENDING for s in statuses.values())
    assert backend.jobs is not None and backend.pods is not None
    lists, sent = backend.jobs.lists, kube.gone_sent

    kube.hold_watches()  # connections drop; while the backend is away, things happen...
    kube.run(ns, job_name(done.job_id))
    kube.succeed(ns, job_name(done.job_id))
    kube.delete_job(ns, job_name(gone.job_id))
    kube.run(ns, job_name(running.job_id))
    late = _spec(tmp_path)
    backend.submit(late)
    kube.compact()  # ...and the history it would resume from is compacted away
    kube.release_watches()

    assert _wait(backend, done, _state(JobState.SUCCESS)).exit_code == 0
    _wait(backend, running, _state(JobState.RUNNING))
    _wait(backend, gone, lambda s: s is None)
    _wait(backend, late, _state(JobState.PENDING))
    assert kube.gone_sent >= sent + 2  # both the Job and the pod watch got 410 Gone
    assert backend.jobs.gone >= 1 and backend.pods.gone >= 1
    assert backend.jobs.lists > lists  # and re-listed
    assert job_name(late.job_id) in backend.jobs.objects  # the re-list, not a confirmation LIST


def test_unreachable_api_is_unavailable_not_vanished(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "current-context: c\n"
    )
    platform = PlatformConfig(
        name="k8s",
        backend="kubernetes",
        cores=1,
        memory_gib=1,
        max_duration_s=60,
        options={"kubeconfig": str(config), "data_pvc": "d", "sync_timeout_s": 0.5},
    )
    backend = KubernetesBackend(platform)
    try:
        with pytest.raises(BackendUnavailable, match="could not be listed"):
            backend.poll([TrackedJob("x", None, tmp_path)])
        assert backend.namespace == "default"
    finally:
        backend.close()
