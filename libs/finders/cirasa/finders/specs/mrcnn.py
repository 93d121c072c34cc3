"""The mrcnn app: the Mask R-CNN radio source detector in caesar-rest's container image.

Two options (research/caesar-rest.md §4.5), category DETECT; the input is passed as
``--image=<path>``. caesar-rest has no default arguments for it but runs the command
``run_mrcnn.sh --runmode=detect --weights=<weights>`` in front of the options; on Kubernetes and Slurm
only the options reach the container and that part is lost. Here it is kept, as the two default
arguments, with caesar-rest's default weights path (its ``--mrcnn_weights`` flag), so every backend
runs what caesar-rest's Celery workers ran.
"""

from __future__ import annotations

from cirasa.finders.registry import App, float_option

DEFAULT_WEIGHTS = "/opt/Software/MaskR-CNN/install/share/mrcnn_weights.h5"

APP = App(
    name="mrcnn",
    description="Mask R-CNN radio source detector, caesar-rest's container image",
    runner="container",
    image="sriggi/mrcnn-detect:latest",
    default_args=("--runmode=detect", f"--weights={DEFAULT_WEIGHTS}"),
    input_flag="--image",
    options=(
        float_option("scoreThr", "Score above which a detected object is kept", 0.7, 0, 1, "DETECT"),
        float_option(
            "iouThr",
            "Intersection over union above which a detection matches a ground-truth object",
            0.6,
            0,
            1,
            "DETECT",
        ),
    ),
)
