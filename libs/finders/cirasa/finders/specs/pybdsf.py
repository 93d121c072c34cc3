"""The pybdsf app, run by ``cirasa.finders.runners.pybdsf``.

Tuned for crowded radio maps (issue 15: 800^2, 4" pixels, 15" beam, 20 uJy beam-correlated noise,
2,500 sources/deg^2 with dN/dS ~ S^-1.6 down to 3 sigma; ``bench/finders.py --sky realistic``). PyBDSF's
own choices lost most sources at 5-10 sigma (44%, where a perfect 5-sigma detector finds 89%):

* the noise: PyBDSF's kappa-clipped rms was 29.1 uJy for 20 (the wings and faint crowd of sources widen
  the upper side of the pixel distribution and survive clipping), so its "5 sigma" was 7.3 sigma; and
  with an automatic rms box of 235 px (> 1/4 of the map) it used one constant. The runner now gives
  PyBDSF its own mean and rms maps measured from the lower tail of the pixels only (the -2 and -1 sigma
  quantiles, which sources barely touch: 21.1 uJy here), in boxes of ``rms-box`` pixels, by default 32
  beam FWHM (120 px here: ~800 independent beams per box, so each measures the noise to ~5%, and the
  largest sources, 4 beams, are small beside it), stepped by a third of the box and interpolated.
  PyBDSF still decides whether the mean map varies enough to use (else a constant, 0 when confused).
  A box larger than a quarter of the map (PyBDSF's limit) gives one lower-tail rms for the whole map;
* spurious components: with the true noise, the Gaussian decomposition of blended islands added broad
  3-4.5 sigma Gaussians on the residual wings of bright neighbours (10 false of 1,428 on seed 1, 99.1%
  reliability). PyBDSF flags Gaussians below ``flag_minsnr`` times the *island* threshold (0.6 x 3 = 1.8
  sigma); the runner sets it so that a Gaussian must reach 0.9 of ``thresh-pix`` (4.5 sigma). 0.8 left
  seed 1 at 99.44%.

Kept: ``thresh-isl`` 3 and ``thresh-pix`` 5 (with a true noise they are the 5-sigma detection the bench
measures, and the 3-sigma islands hold enough pixels, 8 for a 5-sigma point source, for the fits),
PyBDSF's Gaussian decomposition (``group-by-isl`` off). On the map (``bench/finders.py --sky realistic
--apps pybdsf --seed N``), completeness >= 5 sigma / 5-10 / 10-25 / > 25 / extended, reliability, time:

* seed 1 before: 80.0% / 44.5% / 93.3% / 99.0% / 82.5%, 99.7%, 9 s;
  after: 89.9% / 74.2% / 94.7% / 99.1% / 92.7%, 99.6%, 14 s;
* seed 2 before: 77.5% / 43.1% / 91.5% / 98.2% / 78.1%, 99.4%, 8 s;
  after: 88.9% / 74.2% / 94.3% / 98.2% / 86.9%, 99.6%, 14 s;
* seed 3 before: 77.4% / 44.2% / 92.4% / 98.3% / 76.2%, 99.4%, 9 s;
  after: 89.1% / 75.2% / 94.2% / 98.7% / 87.4%, 99.6%, 12 s
  (more Gaussians to fit: 1,405 for 1,197 on seed 1);
* a perfect 5-sigma detector (seed 1): 96.4% / 88.7% / 100% / 100% / 95.7%.
"""

from __future__ import annotations

from cirasa.common.events import ResourceRequest
from cirasa.finders.registry import App, flag, float_option, int_option
from cirasa.finders.specs.aegean import beam_options

APP = App(
    name="pybdsf",
    description="PyBDSF (bdsf): islands decomposed into Gaussians, grouped into sources",
    runner="python",
    module="cirasa.finders.runners.pybdsf",
    options=(
        float_option("thresh-isl", "Island boundary threshold in sigmas", 3.0, 0.5, 1e4, "COMPACT-SOURCES"),
        float_option(
            "thresh-pix", "Source detection (peak) threshold in sigmas", 5.0, 0.5, 1e4, "COMPACT-SOURCES"
        ),
        int_option(
            "rms-box",
            "Box size in pixels for the background and rms maps (0: 32 beams)",
            0,
            0,
            1e4,
            "IMGBKG",
            advanced=True,
        ),
        int_option(
            "rms-step",
            "Step in pixels between rms boxes, with rms-box (0: a third of the box)",
            0,
            0,
            1e4,
            "IMGBKG",
            advanced=True,
        ),
        flag(
            "group-by-isl",
            "Group all Gaussians of an island into one source",
            "COMPACT-SOURCES",
            advanced=True,
        ),
        float_option(
            "frequency",
            "Frequency in Hz, for images without FREQ, RESTFRQ or a spectral axis (0: from the header)",
            0.0,
            0.0,
            1e13,
            "INPUT",
            advanced=True,
        ),
        *beam_options(),
        flag("no-preview", "Do not draw the preview PNG", "OUTPUT"),
    ),
    # Fitting runs in as many processes as the job has cores; one core fits ~30 sources/s.
    resources=ResourceRequest(
        min_cores=1, max_cores=1, min_memory_gib=1.0, max_memory_gib=4.0, duration_s=3600
    ),
)
