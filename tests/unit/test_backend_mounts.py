"""Staged volumes (issue 11) on every backend: the shared target rules (mounts.py), Kubernetes
volumeMounts of the data volume, Slurm links in the job directory, the runner's ``--mount`` option."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import kubernetes_validate
import pytest

from cirasa.backends.base import JobSpec, Mount
from cirasa.backends.kubernetes.manifest import PathMapper, build_job_manifest
from cirasa.backends.kubernetes.options import KubernetesOptions
from cirasa.backends.local_runner import mount_option, parse_args
from cirasa.backends.mounts import Reserved, VolumeMount, check_targets, target_path
from cirasa.backends.slurm import SlurmBackend, SlurmOptions
from cirasa.common.events import Resources
from tests.unit.test_slurm_backend import URL, FakeSlurm

RESOURCES = Resources(cores=1, memory_gib=1, duration_s=600)


def spec(job_dir: Path, *mounts: Mount, image: str | None = None) -> JobSpec:
    return JobSpec("m1", "alice", "sep", ["/venv/bin/python", "-m", "x"], job_dir, RESOURCES, image=image,
                   mounts=mounts)  # fmt: skip


# -- the shared rules -----------------------------------------------------------------------------


def test_targets_are_normalised_and_ordered() -> None:
    mounts = [VolumeMount(Path("/s/b"), "/scratch/"), VolumeMount(Path("/s/a"), "//data/./x.txt")]
    checked = check_targets(mounts, [])
    assert [(m.source, t) for m, t in checked] == [
        (Path("/s/a"), PurePosixPath("/data/x.txt")),
        (Path("/s/b"), PurePosixPath("/scratch")),
    ]
    assert target_path("/a:b/c") == PurePosixPath("/a:b/c")  # colons are fine where nothing splits them


@pytest.mark.parametrize(
    ("targets", "why"),
    [
        (["data"], "'data' is not an absolute path"),
        ([""], "must be a non-empty path"),
        (["/data/../etc"], "contains '..'"),
        (["/"], "whole file system"),
        (["/x\0y"], "NUL"),
        (["/proc"], "would cover the system path /proc"),
        (["/dev/shm/x"], "lies inside the system path /dev"),
        (["/etc/passwd"], "lies inside the system path /etc"),
        (["/keep/it/x"], "lies inside the thing /keep/it"),
        (["/keep"], "would cover the thing /keep/it"),
        (["/tmp"], "would cover the open /tmp"),
        (["/a", "/b", "/a/"], "two mounts have the same target /a"),
        (["/a/b/c", "/a"], "mount targets /a and /a/b/c nest"),
        (["/a=b"], "contains '='"),
    ],
)
def test_bad_targets_are_refused(targets: list[str], why: str) -> None:
    keep = [
        Reserved(PurePosixPath("/keep/it"), "the thing"),
        Reserved(PurePosixPath("/tmp"), "the open", True),
    ]
    keep += [Reserved(PurePosixPath(p), "the system path") for p in ("/proc", "/dev", "/etc")]
    mounts = [VolumeMount(Path(f"/src/{i}"), t) for i, t in enumerate(targets)]
    with pytest.raises(ValueError, match=why.replace("(", r"\(")):
        check_targets(mounts, keep, forbidden_chars="=")
    assert check_targets([VolumeMount(Path("/s"), "/tmp/data")], keep)  # inside /tmp is fine


def test_the_runner_option_keeps_any_path_intact() -> None:
    mounts = [Mount(Path("/j/.cirasa/volumes/a:b/x=1.fits"), "/data/x:1.fits"),
              Mount(Path("/j/volumes/s"), "/scratch", read_only=False)]  # fmt: skip
    args = ["--job-dir", "/j", "--cores", "1", "--memory-gib", "1", "--timeout-s", "9", "--sandbox"]
    for mount in mounts:
        args += ["--mount", mount_option(mount)]
    opts, argv = parse_args([*args, "--", "true"])
    assert [(m.source, m.target, m.read_only) for m in opts.mount] == [
        (m.source, m.target, m.read_only) for m in mounts
    ]
    assert argv == ["true"]
    assert json.loads(mount_option(mounts[1]))["mode"] == "rw"


@pytest.mark.parametrize(
    "value", ["/a:/b:ro", '{"source": "/a", "target": "/b"}', '{"source": "/a", "target": "/b", "mode": "x"}']
)
def test_a_malformed_runner_option_is_a_usage_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--job-dir", "/j", "--cores", "1", "--memory-gib", "1", "--timeout-s", "9",
                    "--sandbox", "--mount", value, "--", "true"])  # fmt: skip
    assert exited.value.code == 2
    assert "--mount takes" in capsys.readouterr().err


def test_mounts_need_the_sandbox_in_the_runner(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--job-dir", "/j", "--cores", "1", "--memory-gib", "1", "--timeout-s", "9",
                    "--mount", mount_option(Mount(Path("/a"), "/b")), "--", "true"])  # fmt: skip
    assert "--mount needs --sandbox" in capsys.readouterr().err


# -- Kubernetes -----------------------------------------------------------------------------------

SERVICE_ROOT = Path("/srv/cirasa")
JOB_DIR = SERVICE_ROOT / "jobs" / "alice" / "job_m1"


def manifest(*mounts: Mount, **options: Any) -> dict[str, Any]:
    opts = KubernetesOptions.model_validate(
        {"data_pvc": "cirasa-data", "mount_path": "/data", "service_root": str(SERVICE_ROOT),
         "runner_image": "cirasa:test", **options}
    )  # fmt: skip
    mapper = PathMapper(PurePosixPath(str(SERVICE_ROOT)), PurePosixPath(opts.mount_path))
    return build_job_manifest(spec(JOB_DIR, *mounts), opts, "k8s", mapper)


def test_kubernetes_mounts_are_subpaths_of_the_data_volume() -> None:
    job = manifest(
        Mount(JOB_DIR / ".cirasa" / "volumes" / "sky" / "sky.fits", "/input/sky.fits"),
        Mount(JOB_DIR / ".cirasa" / "volumes" / "cat", "/tmp/catalogue"),
        Mount(JOB_DIR / "volumes" / "scratch", "/scratch", read_only=False),
    )
    kubernetes_validate.validate(job, "1.31.0", strict=True)  # what the API server takes
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["volumeMounts"] == [
        {"name": "data", "mountPath": "/data"},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "data", "mountPath": "/input/sky.fits", "readOnly": True,
         "subPath": "jobs/alice/job_m1/.cirasa/volumes/sky/sky.fits"},
        {"name": "data", "mountPath": "/scratch", "readOnly": False,
         "subPath": "jobs/alice/job_m1/volumes/scratch"},
        {"name": "data", "mountPath": "/tmp/catalogue", "readOnly": True,
         "subPath": "jobs/alice/job_m1/.cirasa/volumes/cat"},
    ]  # fmt: skip
    volumes = {v["name"] for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes == {"data", "tmp"}  # every volume is a part of the one data volume


def test_kubernetes_refuses_a_source_off_the_data_volume() -> None:
    with pytest.raises(ValueError, match=r"/elsewhere/sky\.fits is not on the data volume"):
        manifest(Mount(Path("/elsewhere/sky.fits"), "/input/sky.fits"))
    with pytest.raises(ValueError, match="not a file or directory on the data volume"):
        manifest(Mount(SERVICE_ROOT, "/everything"))  # the whole volume: every user's files


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("input", "not an absolute path"),
        ("/in/../data", "contains '..'"),
        ("/data", "would cover the data volume's mount path"),
        ("/data/sky.fits", "lies inside the data volume's mount path"),
        ("/data/jobs/alice/job_m1/x", "lies inside the data volume's mount path"),
        ("/", "whole file system"),
        ("/tmp", "would cover the pod's /tmp"),
        ("/usr/share/x", "lies inside the system path /usr"),
    ],
)
def test_kubernetes_refuses_a_bad_target(target: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        manifest(Mount(JOB_DIR / "volumes" / "v", target))


def test_kubernetes_without_mounts_is_unchanged() -> None:
    (container,) = manifest()["spec"]["template"]["spec"]["containers"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/data", "/tmp"]


# -- Slurm ----------------------------------------------------------------------------------------


def slurm(tmp_path: Path, fake: FakeSlurm, **options: Any) -> SlurmBackend:
    opts = SlurmOptions.model_validate({"url": URL, "user": "astro", "token": "t", **options})
    return SlurmBackend(opts, data_dir=tmp_path / "data", jobs_dir=tmp_path / "jobs",
                        transport=httpx.MockTransport(fake.handler))  # fmt: skip


def staged_job(tmp_path: Path) -> tuple[Path, tuple[Mount, ...]]:
    job_dir = (tmp_path / "jobs" / "alice" / "job_m1").resolve()
    volumes = job_dir / ".cirasa" / "volumes"
    (volumes / "sky").mkdir(parents=True)
    blob = tmp_path / "cache" / "blob"
    blob.parent.mkdir()
    blob.write_bytes(b"SIMPLE")
    blob.chmod(0o644)  # the link must leave it 0444 whatever it was staged with
    os.link(blob, volumes / "sky" / "sky.fits")
    (volumes / "cat" / "sub").mkdir(parents=True)
    (volumes / "cat" / "sub" / "rows.txt").write_text("1 2 3")
    (job_dir / "volumes" / "scratch").mkdir(parents=True)
    return job_dir, (
        Mount(volumes / "sky" / "sky.fits", "/data/sky.fits"),
        Mount(volumes / "cat", "/catalogue"),
        Mount(job_dir / "volumes" / "scratch", "/scratch", read_only=False),
    )


def test_slurm_links_the_volumes_into_the_job_directory(tmp_path: Path) -> None:
    fake = FakeSlurm()
    job_dir, mounts = staged_job(tmp_path)
    backend = slurm(tmp_path, fake, cluster_jobs_dir="/lustre/jobs")
    assert backend.submit(spec(job_dir, *mounts)) == "100"
    cluster = "/lustre/jobs/alice/job_m1"
    assert os.readlink(job_dir / "data" / "sky.fits") == f"{cluster}/.cirasa/volumes/sky/sky.fits"
    assert os.readlink(job_dir / "catalogue") == f"{cluster}/.cirasa/volumes/cat"
    assert os.readlink(job_dir / "scratch") == f"{cluster}/volumes/scratch"
    assert (job_dir / "data").stat().st_mode & 0o777 == 0o755
    assert (job_dir / ".cirasa" / "volumes" / "sky" / "sky.fits").stat().st_mode & 0o777 == 0o444
    assert (tmp_path / "cache" / "blob").read_bytes() == b"SIMPLE"
    assert (job_dir / ".cirasa" / "volumes" / "cat" / "sub" / "rows.txt").stat().st_mode & 0o777 == 0o444
    (post,) = fake.calls("POST", "/job/submit")
    env = json.loads(post.content)["job"]["environment"]
    assert env["CIRASA_VOLUMES"] == ":".join([
        f"/catalogue={cluster}/catalogue",
        f"/data/sky.fits={cluster}/data/sky.fits",
        f"/scratch={cluster}/scratch",
    ])  # fmt: skip
    assert env["PATH"]  # the rest of the environment is still there

    # a repeated submit (the job vanished from Slurm's list) finds its links made and keeps them
    fake.jobs.clear()
    assert backend.submit(spec(job_dir, *mounts)) == "101"
    assert os.readlink(job_dir / "scratch") == f"{cluster}/volumes/scratch"


def test_slurm_links_resolve_where_the_paths_are_the_same(tmp_path: Path) -> None:
    fake = FakeSlurm()
    job_dir, mounts = staged_job(tmp_path)
    backend = slurm(tmp_path, fake)
    backend.submit(spec(job_dir, *mounts))
    assert (job_dir / "data" / "sky.fits").read_bytes() == b"SIMPLE"
    assert (job_dir / "catalogue" / "sub" / "rows.txt").read_text() == "1 2 3"
    (job_dir / "scratch" / "out.txt").write_text("written")
    assert (job_dir / "volumes" / "scratch" / "out.txt").read_text() == "written"


def test_slurm_without_mounts_sets_no_volumes(tmp_path: Path) -> None:
    body = slurm(tmp_path, FakeSlurm()).submission(spec(tmp_path / "jobs" / "alice" / "job_m1"))
    assert "CIRASA_VOLUMES" not in body["job"]["environment"]


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("scratch", "not an absolute path"),
        ("/a/../../x", "contains '..'"),
        ("/a:b", "contains ':'"),
        ("/a=b", "contains '='"),
        ("/stdout.log", "would cover the job directory's /stdout.log"),
        ("/.cirasa/volumes/x", "lies inside the job directory's /.cirasa"),
        ("/volumes", "would cover the job directory's /volumes"),
        ("/proc/x", "lies inside the system path /proc"),
    ],
)
def test_slurm_refuses_a_bad_target(tmp_path: Path, target: str, why: str) -> None:
    fake = FakeSlurm()
    job_dir, mounts = staged_job(tmp_path)
    with pytest.raises(ValueError, match=why):
        slurm(tmp_path, fake).submit(spec(job_dir, mounts[0], Mount(mounts[1].source, target)))
    assert fake.calls("POST", "/job/submit") == []
    assert not (job_dir / "data").exists()  # checked before anything is linked


def test_slurm_refuses_to_link_over_the_jobs_files(tmp_path: Path) -> None:
    fake = FakeSlurm()
    job_dir, mounts = staged_job(tmp_path)
    (job_dir / "catalogue").write_text("the job's own file")
    with pytest.raises(ValueError, match="is already in the job directory"):
        slurm(tmp_path, fake).submit(spec(job_dir, *mounts))
    assert (job_dir / "catalogue").read_text() == "the job's own file"
    assert fake.calls("POST", "/job/submit") == []


def test_slurm_never_links_through_a_symlink(tmp_path: Path) -> None:
    fake = FakeSlurm()
    job_dir, mounts = staged_job(tmp_path)
    (job_dir / "data").symlink_to(tmp_path / "cache")
    with pytest.raises(ValueError, match="is a symbolic link"):
        slurm(tmp_path, fake).submit(spec(job_dir, *mounts))
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["blob"]
