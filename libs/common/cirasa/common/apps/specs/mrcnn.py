"""The mrcnn app."""

from __future__ import annotations

from cirasa.common.apps.registry import App, float_option

APP = App(
    name="mrcnn",
    description="Mask R-CNN radio source detector, caesar-rest's container image",
    runner="container",
    image="sriggi/mrcnn-detect:latest",
    default_args=("--runmode=detect",),
    input_flag="--image",
    options=(
        float_option("scoreThr", "Detected object score threshold", 0.7, 0, 1, "DETECT"),
        float_option(
            "iouThr", "IOU threshold between detected and ground truth objects", 0.6, 0, 1, "DETECT"
        ),
    ),
)
