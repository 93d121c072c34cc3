"""Imported first by the finder runners that spend the job's cores on worker processes of their own
(BANE's, PyBDSF's fitting processes, photutils' deblending, the consensus's finders): the local runner
announces the cores it reserved as ``OMP_NUM_THREADS`` & co.; the count is kept in ``CIRASA_JOB_CORES``
(``support.JOB_CORES_ENV``, read by ``support.job_cores``) and the numerical libraries are pinned to one
thread in this process and its workers (threaded BLAS made Aegean's fits 2-3x slower on a shared
machine). It acts on import, which must come before numpy's first: a runner imports it alone, with
``# isort: split`` after it."""

import os

os.environ.setdefault("CIRASA_JOB_CORES", os.environ.get("OMP_NUM_THREADS", ""))
for _name in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ[_name] = "1"
