"""Slurm backend: jobs go to a Slurm cluster through slurmrestd (REST + JWT, API v0.0.36-v0.0.38).

Platform options (``PlatformConfig.options``) are validated by :class:`SlurmOptions`, e.g.::

    options:
      url: http://slurm-rest.example.org:6820
      user: cirasa                     # X-SLURM-USER-NAME; jobs run as this user
      token_file: /run/secrets/slurm-jwt
      partition: astro
      cluster_data_dir: /lustre/cirasa/data    # where CIRASA_DATA_DIR is mounted on the cluster
      cluster_jobs_dir: /lustre/cirasa/jobs    # where CIRASA_JOBS_DIR is mounted on the cluster
      python: /opt/cirasa/venv/bin/python
      container_command: apptainer

What the backend relies on:

* **Idempotency** by job name ``cirasa-<job_id>``: :meth:`SlurmBackend.submit` looks the name up first
  and returns the Slurm job that already carries it (see the comment there for the race window).
* **One** ``GET /jobs`` per :meth:`SlurmBackend.poll`, whatever the number of jobs.
* **Finished jobs are forgotten** by slurmctld ``MinJobAge`` seconds after they end (no accounting
  database is assumed). A job missing from the answer is reported as None and the monitor fails it as
  vanished, so the monitor must poll well within MinJobAge (scripts/slurm.sh sets one hour).
* **Tokens**: a fixed ``token``, a ``token_env`` variable, a ``token_file`` (re-read whenever the file
  changes, so an external renewer such as a cron job running ``scontrol token`` keeps it fresh), or a
  ``token_command`` that prints a token (``scontrol token username=... lifespan=...``), run again
  ``token_renew_before_s`` before the expiry written in the JWT. On an authentication failure the token
  is re-read/re-minted once and the request repeated.
* **Shared filesystem**: the job directory and the input files must be visible on the cluster, under the
  mapped paths. The batch script is the only place a shell sees anything: every word in it is
  ``shlex.quote``-d.

The modules: ``options`` (the platform options), ``tokens`` (the JWT), ``client`` (slurmrestd's REST
API), ``script`` (the job description and batch script), ``status`` (Slurm's job records in our terms),
``capacity`` (free resources for the planner) and ``backend`` (the Backend protocol over all of them).
"""

from cirasa.backends.slurm.backend import SlurmBackend
from cirasa.backends.slurm.capacity import SlurmCapacity
from cirasa.backends.slurm.client import ERR_INVALID_JOB_ID, SlurmClient, SlurmReply
from cirasa.backends.slurm.errors import SlurmAuthError, SlurmConfigError, SlurmError
from cirasa.backends.slurm.options import SlurmOptions
from cirasa.backends.slurm.script import JOB_NAME_PREFIX, SubmissionBuilder, job_name
from cirasa.backends.slurm.status import TERMINAL_SLURM_STATES, decode_exit_status, job_status
from cirasa.backends.slurm.tokens import TokenSource, jwt_expiry

__all__ = [
    "ERR_INVALID_JOB_ID",
    "JOB_NAME_PREFIX",
    "TERMINAL_SLURM_STATES",
    "SlurmAuthError",
    "SlurmBackend",
    "SlurmCapacity",
    "SlurmClient",
    "SlurmConfigError",
    "SlurmError",
    "SlurmOptions",
    "SlurmReply",
    "SubmissionBuilder",
    "TokenSource",
    "decode_exit_status",
    "job_name",
    "job_status",
    "jwt_expiry",
]
