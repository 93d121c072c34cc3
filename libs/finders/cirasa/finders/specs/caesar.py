"""The caesar app: CAESAR's source finder in caesar-rest's container image, with caesar-rest's schema.

The 156 options (61 flags, 48 float, 35 int, 12 string enums; 50 advanced, none mandatory) have
caesar-rest's names, types, defaults, bounds, allowed values, categories and advanced marks
(research/caesar-rest.md §4.2), in caesar-rest's declaration order, which is the order they take on
the command line. The container receives ``--run --save-summaryplot --save-regions
--save-catalog-to-json``, the options given, then ``--inputfile=<path>``. Defaults are descriptive:
an option that is not given is not passed, and CAESAR applies its own default.

Nine enums reach CAESAR as numeric codes (``Option.codes``), e.g. ``bkgestimator=Median`` becomes
``--bkgestimator=2``; the other three (``fit-minimizer``, ``fit-minimizeralgo``, ``loglevel``) pass
their value unchanged.

``tilesize``: caesar-rest declares it an int but gives it the float default 0. and float bounds
[0., 1e7]. ``describe`` keeps those values as caesar-rest shows them, so its clients see the same
schema; the option is validated as an int (an integral float such as 512.0 is accepted and passed as
``--tilesize=512``, 512.5 is rejected rather than truncated) because CAESAR reads a tile size in pixels.
"""

from __future__ import annotations

from cirasa.finders.registry import App, Option, flag, float_option, int_option

OUTPUT = "OUTPUT"
IMGREAD = "IMGREAD"
IMGSTATS = "IMGSTATS"
IMGBKG = "IMGBKG"
COMPACT = "COMPACT-SOURCES"
IMGRES = "IMGRES"
IMGSMOOTH = "IMGSMOOTH"
EXTENDED = "EXTENDED-SOURCES"
RUN = "RUN"

SELECTION = "SELECTION"
NESTED = "NESTED-SOURCES"
FITTING = "FITTING"
SALIENCY = "SALIENCY"
CONTOUR = "ACTIVE-CONTOUR"
WAVELET = "WAVELET-TRANSFORM"


def enum(
    name: str,
    desc: str,
    default: str,
    allowed: tuple[str, ...],
    cat: str,
    codes: dict[str, int] | None = None,
    subcategory: str = "",
    advanced: bool = False,
) -> Option:
    return Option(
        name,
        "str",
        desc,
        default,
        allowed=allowed,
        category=cat,
        subcategory=subcategory,
        advanced=advanced,
        codes=codes,
    )


_OUTPUT = (
    flag("save-fits", "Save the output maps as FITS files instead of ROOT", OUTPUT),
    flag("save-inputmap", "Save the input map in the output file", OUTPUT),
    flag("save-bkgmap", "Save the background map in the output file", OUTPUT),
    flag("save-rmsmap", "Save the noise (rms) map in the output file", OUTPUT),
    flag("save-significancemap", "Save the significance map in the output file", OUTPUT),
    flag(
        "save-residualmap", "Save the residual map (input minus compact sources) in the output file", OUTPUT
    ),
    flag("save-saliencymap", "Save the saliency map in the output file", OUTPUT),
    flag("save-segmentedmap", "Save the segmented map in the output file", OUTPUT),
    flag("convertregionstowcs", "Write the DS9 regions in sky (WCS) coordinates", OUTPUT, advanced=True),
    enum(
        "regionwcs",
        "Sky coordinate system of the DS9 regions written in WCS",
        "J2000",
        ("J2000", "B1950", "GALACTIC"),
        OUTPUT,
        codes={"J2000": 0, "B1950": 1, "GALACTIC": 2},
        advanced=True,
    ),
)

_IMGREAD = (
    flag("read-subimg", "Read only the sub-image [xmin, xmax] x [ymin, ymax] of the input map", IMGREAD),
    int_option(
        "xmin", "First pixel column of the sub-image (0: the whole image)", 0, -1000000, 1000000, IMGREAD
    ),
    int_option(
        "xmax", "Last pixel column of the sub-image (0: the whole image)", 0, -1000000, 1000000, IMGREAD
    ),
    int_option(
        "ymin", "First pixel row of the sub-image (0: the whole image)", 0, -1000000, 1000000, IMGREAD
    ),
    int_option("ymax", "Last pixel row of the sub-image (0: the whole image)", 0, -1000000, 1000000, IMGREAD),
)

_IMGSTATS = (
    flag(
        "no-parallelmedian",
        "Compute medians with the serial instead of the parallel algorithm",
        IMGSTATS,
        advanced=True,
    ),
)

_IMGBKG = (
    float_option(
        "bmaj",
        "Beam major axis in arcsec, used only when the map header has no beam",
        10.0,
        0,
        3600,
        IMGBKG,
        advanced=True,
    ),
    float_option(
        "bmin",
        "Beam minor axis in arcsec, used only when the map header has no beam",
        5.0,
        0,
        3600,
        IMGBKG,
        advanced=True,
    ),
    float_option(
        "bpa",
        "Beam position angle in degrees, used only when the map header has no beam",
        0.0,
        0,
        180,
        IMGBKG,
        advanced=True,
    ),
    float_option(
        "mappixsize",
        "Pixel size in arcsec, used only when the map header does not give it",
        1.0,
        0,
        3600,
        IMGBKG,
        advanced=True,
    ),
    flag("globalbkg", "Use one global background and noise level instead of local maps", IMGBKG),
    enum(
        "bkgestimator",
        "Statistic used to estimate the background",
        "Median",
        ("Mean", "Median", "BiWeight", "ClippedMedian"),
        IMGBKG,
        codes={"Mean": 1, "Median": 2, "BiWeight": 3, "ClippedMedian": 4},
    ),
    flag("bkgboxpix", "Give the background box size in pixels instead of in beams", IMGBKG),
    float_option(
        "bkgbox",
        "Size of the local background box, in beams (or pixels with bkgboxpix)",
        20.0,
        0.01,
        1000,
        IMGBKG,
    ),
    float_option(
        "bkggrid", "Step of the local background grid, as a fraction of the box size", 0.2, 0, 1, IMGBKG
    ),
    flag("no-bkg2ndpass", "Skip the second pass of the local background estimate", IMGBKG, advanced=True),
    flag(
        "bkgskipoutliers",
        "Exclude blobs above the seed threshold when estimating the background",
        IMGBKG,
        advanced=True,
    ),
    int_option(
        "sourcebkgboxborder",
        "Border in pixels of the box around a source used for its background in the fit",
        20,
        0,
        1000,
        IMGBKG,
        advanced=True,
    ),
)

_COMPACT = (
    flag("no-compactsearch", "Do not search for compact sources", COMPACT),
    int_option("npixmin", "Minimum number of pixels of a compact source", 5, 0, 10000, COMPACT),
    float_option("seedthr", "Seed threshold of the flood fill, in noise sigmas", 5.0, 0, 10000, COMPACT),
    float_option(
        "mergethr", "Merge (growth) threshold of the flood fill, in noise sigmas", 2.6, 0, 10000, COMPACT
    ),
    int_option(
        "compactsearchiters",
        "Number of compact source search iterations, lowering the seed threshold each time",
        1,
        0,
        100,
        COMPACT,
    ),
    float_option(
        "seedthrstep", "Seed threshold decrease between search iterations, in sigmas", 0.5, 0, 10, COMPACT
    ),
)

_SELECTION = (
    flag(
        "selectsources",
        "Apply the point-like selection cuts to the compact sources found",
        COMPACT,
        subcategory=SELECTION,
    ),
    flag(
        "no-boundingboxcut", "With selectsources, skip the bounding box cut", COMPACT, subcategory=SELECTION
    ),
    int_option(
        "minboundingbox",
        "Minimum bounding box size in pixels; smaller sources are tagged bad",
        2,
        0,
        1000000,
        COMPACT,
        subcategory=SELECTION,
    ),
    flag(
        "no-circratiocut",
        "With selectsources, skip the circularity ratio cut",
        COMPACT,
        advanced=True,
        subcategory=SELECTION,
    ),
    float_option(
        "circratiothr",
        "Circularity ratio (0 line, 1 circle) above which a source passes the point-like cut",
        0.4,
        0,
        1,
        COMPACT,
        advanced=True,
        subcategory=SELECTION,
    ),
    flag(
        "no-elongationcut",
        "With selectsources, skip the elongation cut",
        COMPACT,
        advanced=True,
        subcategory=SELECTION,
    ),
    float_option(
        "elongationthr",
        "Elongation below which a source passes the point-like cut",
        0.7,
        0,
        1,
        COMPACT,
        advanced=True,
        subcategory=SELECTION,
    ),
    flag(
        "ellipsearearatiocut",
        "With selectsources, apply the cut on the ratio of source area to fitted ellipse area",
        COMPACT,
        advanced=True,
        subcategory=SELECTION,
    ),
    float_option(
        "ellipsearearatiominthr",
        "Lowest source to ellipse area ratio that passes the point-like cut",
        0.6,
        0,
        10,
        COMPACT,
        advanced=True,
        subcategory=SELECTION,
    ),
    float_option(
        "ellipsearearatiomaxthr",
        "Highest source to ellipse area ratio that passes the point-like cut",
        1.4,
        0,
        10,
        COMPACT,
        advanced=True,
        subcategory=SELECTION,
    ),
    flag(
        "maxnpixcut",
        "With selectsources, apply the cut on the maximum number of pixels",
        COMPACT,
        subcategory=SELECTION,
    ),
    int_option(
        "maxnpix",
        "Number of pixels below which a source passes the point-like cut",
        1000,
        0,
        10000000,
        COMPACT,
        subcategory=SELECTION,
    ),
    flag(
        "no-nbeamscut",
        "With selectsources, skip the cut on the number of beams in a source",
        COMPACT,
        subcategory=SELECTION,
    ),
    float_option(
        "nbeamsthr",
        "Number of beams below which a source passes the point-like cut",
        3.0,
        0,
        1000,
        COMPACT,
        subcategory=SELECTION,
    ),
)

_NESTED = (
    flag(
        "no-nestedsearch",
        "Do not search for sources nested inside the compact sources",
        COMPACT,
        subcategory=NESTED,
    ),
    enum(
        "blobmaskmethod",
        "Filter used to find nested blobs",
        "MultiScaleLoG",
        ("GausLaplacian", "MultiScaleLoG"),
        COMPACT,
        codes={"GausLaplacian": 1, "MultiScaleLoG": 2},
        subcategory=NESTED,
    ),
    float_option(
        "nested-sourcetobeamthr",
        "Source area in beams above which nested sources are searched (0: always)",
        5.0,
        0,
        1000000,
        COMPACT,
        subcategory=NESTED,
    ),
    float_option(
        "nested-blobthr",
        "Nested blob threshold, in multiples of the median curvature",
        0.0,
        0,
        100,
        COMPACT,
        advanced=True,
        subcategory=NESTED,
    ),
    int_option(
        "nested-minmotherdist",
        "Distance in pixels from the parent's centre below which a nested blob is dropped",
        2,
        0,
        100,
        COMPACT,
        advanced=True,
        subcategory=NESTED,
    ),
    float_option(
        "nested-maxmotherpixmatch",
        "Fraction of pixels shared with the parent above which a nested blob is dropped",
        0.5,
        0,
        1,
        COMPACT,
        advanced=True,
        subcategory=NESTED,
    ),
    float_option(
        "nested-blobpeakzthr",
        "Peak significance threshold of nested blobs in the curvature map",
        5.0,
        0,
        10000,
        COMPACT,
        subcategory=NESTED,
    ),
    float_option(
        "nested-blobpeakzthrmerge",
        "Merge significance threshold of nested blobs in the curvature map",
        2.5,
        0,
        10000,
        COMPACT,
        subcategory=NESTED,
    ),
    float_option(
        "nested-blobminscale",
        "Smallest blob search scale, in units of the beam width",
        1.0,
        0,
        10000,
        COMPACT,
        subcategory=NESTED,
    ),
    float_option(
        "nested-blobmaxscale",
        "Largest blob search scale, in units of the beam width",
        3.0,
        0,
        10000,
        COMPACT,
        subcategory=NESTED,
    ),
    float_option(
        "nested-blobscalestep", "Step between blob search scales", 1.0, 0, 10000, COMPACT, subcategory=NESTED
    ),
    float_option(
        "nested-blobkernfactor",
        "Size of the curvature (LoG) kernel, in multiples of the blob scale",
        1.0,
        0,
        1000,
        COMPACT,
        advanced=True,
        subcategory=NESTED,
    ),
)

_FITTING = (
    flag(
        "fitsources",
        "Fit the compact sources with Gaussian mixtures to measure their parameters",
        COMPACT,
        subcategory=FITTING,
    ),
    flag(
        "fit-usethreads",
        "Fit with several threads (needs the Minuit2 minimizer)",
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    enum(
        "fit-minimizer",
        "Minimizer used in the fit",
        "Minuit2",
        ("Minuit", "Minuit2"),
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    enum(
        "fit-minimizeralgo",
        "Algorithm of the minimizer",
        "minimize",
        ("migrad", "simplex", "minimize", "scan", "fumili"),
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    int_option(
        "fit-printlevel", "Verbosity of the minimizer", 0, 0, 3, COMPACT, advanced=True, subcategory=FITTING
    ),
    int_option(
        "fit-strategy",
        "Minimizer strategy: higher is slower and more accurate",
        2,
        0,
        3,
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    int_option(
        "fit-maxnbeams",
        "Largest source, in beams, that is fitted",
        20,
        0,
        100000,
        COMPACT,
        subcategory=FITTING,
    ),
    int_option(
        "fit-maxcomponents",
        "Maximum number of Gaussian components fitted per source",
        3,
        0,
        100,
        COMPACT,
        subcategory=FITTING,
    ),
    flag(
        "fit-usenestedascomponents",
        "Start the fit components from the nested sources found",
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    flag("fit-freebkg", "Let the background offset vary in the fit", COMPACT, subcategory=FITTING),
    flag(
        "fit-estimatedbkg",
        "Start the background offset from the estimated background",
        COMPACT,
        subcategory=FITTING,
    ),
    flag(
        "fit-usebkgboxestimate",
        "Estimate the starting background in a box around the source",
        COMPACT,
        subcategory=FITTING,
    ),
    float_option(
        "fit-bkg",
        "Starting value of the background offset (unused with fit-estimatedbkg)",
        0.0,
        -1000000,
        1000000,
        COMPACT,
        subcategory=FITTING,
    ),
    float_option(
        "fit-ampllimit",
        "Amplitude range allowed in the fit, as a fraction of the peak (peak x (1 +/- limit))",
        0.3,
        0,
        2,
        COMPACT,
        subcategory=FITTING,
    ),
    flag(
        "prefit-freeampl",
        "Let the amplitudes vary in the pre-fit",
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    float_option(
        "fit-sigmalimit",
        "Gaussian width range allowed in the fit, as a fraction of the beam (beam x (1 +/- limit))",
        0.3,
        0,
        2,
        COMPACT,
        subcategory=FITTING,
    ),
    float_option(
        "fit-thetalimit",
        "Position angle range allowed in the fit around the beam's, in degrees",
        90.0,
        0,
        360,
        COMPACT,
        subcategory=FITTING,
    ),
    flag("fit-nobkglimits", "Do not bound the background offset in the fit", COMPACT, subcategory=FITTING),
    flag("fit-noampllimits", "Do not bound the Gaussian amplitudes in the fit", COMPACT, subcategory=FITTING),
    flag("fit-nosigmalimits", "Do not bound the Gaussian widths in the fit", COMPACT, subcategory=FITTING),
    flag("fit-noposlimits", "Do not bound the Gaussian centres in the fit", COMPACT, subcategory=FITTING),
    int_option(
        "fit-poslimit",
        "Range allowed for the Gaussian centres, in pixels",
        3,
        0,
        1000,
        COMPACT,
        subcategory=FITTING,
    ),
    flag("prefit-freepos", "Let the centres vary in the pre-fit", COMPACT, subcategory=FITTING),
    flag(
        "fit-nothetalimits",
        "Do not bound the Gaussian position angles in the fit",
        COMPACT,
        subcategory=FITTING,
    ),
    flag(
        "fit-fixsigma",
        "Keep the Gaussian widths fixed at the beam in the fit",
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    flag(
        "prefit-fixsigma",
        "Keep the Gaussian widths fixed in the pre-fit",
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    flag(
        "fit-fixtheta",
        "Keep the Gaussian position angles fixed at the beam's in the fit",
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    flag(
        "prefit-fixtheta",
        "Keep the Gaussian position angles fixed in the pre-fit",
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    int_option(
        "fit-peakminkern",
        "Smallest dilation kernel, in pixels, used to find the peaks that seed the components",
        3,
        0,
        100,
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    int_option(
        "fit-peakmaxkern",
        "Largest dilation kernel, in pixels, used to find the peaks that seed the components",
        7,
        0,
        100,
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    int_option(
        "fit-peakmultiplicitythr",
        "Number of dilation kernels in which a peak must be found (-1: all of them)",
        1,
        -1,
        100,
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    int_option(
        "fit-peakshifttol",
        "Shift in pixels within which peaks found with different kernels are the same",
        2,
        0,
        20,
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    float_option(
        "fit-peakzthrmin",
        "Significance above the source background, in sigmas, below which a peak is ignored",
        1.0,
        0,
        1000,
        COMPACT,
        subcategory=FITTING,
    ),
    float_option(
        "fit-fcntol",
        "Tolerance on the fit function for convergence",
        0.01,
        0,
        100,
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    int_option(
        "fit-maxniters",
        "Maximum number of fit iterations (function calls)",
        10000,
        0,
        1000000,
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    flag(
        "fit-noimproveconvergence",
        "Do not refit iteratively when the fit does not converge",
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    flag(
        "fit-noretry",
        "Do not retry a failed fit with fewer components",
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    int_option(
        "fit-nretries",
        "Maximum number of retries of a failed fit or one with parameters at their bounds",
        10,
        0,
        100000,
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    float_option(
        "fit-parboundincreasestep",
        "Step by which parameter bounds widen at each retry, as a fraction of their range",
        0.1,
        0,
        10,
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    flag(
        "fit-improveerrors",
        "Run a final minimizer step (e.g. HESSE) to improve the parameter errors",
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    flag(
        "fit-scaledatatomax",
        "Scale the source pixels to their maximum for the fit instead of to mJy",
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
    flag("fit-nochi2cut", "Do not reject fitted sources by reduced chi-square", COMPACT, subcategory=FITTING),
    float_option(
        "fit-chi2cut",
        "Reduced chi-square above which a fitted source is rejected",
        5.0,
        0,
        1000,
        COMPACT,
        subcategory=FITTING,
    ),
    flag(
        "fit-useellipsecuts",
        "Apply the ellipse cuts to the fitted sources",
        COMPACT,
        advanced=True,
        subcategory=FITTING,
    ),
)

_IMGRES = (
    flag("computeresiduals", "Compute the residual map after the compact source search", IMGRES),
    flag("res-removenested", "For sources with nested sources, remove only the nested ones", IMGRES),
    float_option(
        "res-zthr",
        "Significance, in sigmas, of the sources removed in the residual map",
        5.0,
        0,
        10000,
        IMGRES,
    ),
    float_option(
        "res-zhighthr",
        "Significance, in sigmas, above which sources are always removed in the residual map",
        10.0,
        0,
        10000,
        IMGRES,
    ),
    int_option(
        "dilatekernsize", "Size in pixels of the kernel that dilates removed sources", 9, 1, 1001, IMGRES
    ),
    enum(
        "res-removedsourcetype",
        "Type of the sources removed in the residual map",
        "POINT-LIKE",
        ("ALL", "COMPACT", "POINT-LIKE", "EXTENDED"),
        IMGRES,
        codes={"ALL": -1, "COMPACT": 1, "POINT-LIKE": 2, "EXTENDED": 3},
    ),
    enum(
        "res-pssubtractionmethod",
        "How point sources are removed in the residual map",
        "DILATION",
        ("DILATION", "FITMODEL"),
        IMGRES,
        codes={"DILATION": 1, "FITMODEL": 2},
    ),
    flag(
        "res-bkgaroundsource",
        "Fill removed sources with the background around them instead of the background map",
        IMGRES,
    ),
)

_IMGSMOOTH = (
    flag("no-presmoothing", "Do not smooth the map before the extended source search", IMGSMOOTH),
    enum(
        "smoothfilter",
        "Smoothing filter",
        "GUIDED",
        ("GAUSSIAN", "GUIDED"),
        IMGSMOOTH,
        codes={"GAUSSIAN": 1, "GUIDED": 2},
    ),
    float_option("guidedfilter-radius", "Radius of the guided filter", 12.0, 0, 1000, IMGSMOOTH),
    float_option("guidedfilter-eps", "Regularisation (eps) of the guided filter", 0.04, 0, 1000, IMGSMOOTH),
)

_EXTENDED = (
    flag("no-extendedsearch", "Do not search for extended sources", EXTENDED),
    enum(
        "extsfinder",
        "Extended source search method",
        "SALIENCY-THRESH",
        ("WT-THRESH", "SP-HIERCLUST", "ACTIVE-CONTOUR", "SALIENCY-THRESH"),
        EXTENDED,
        codes={"WT-THRESH": 1, "SP-HIERCLUST": 2, "ACTIVE-CONTOUR": 3, "SALIENCY-THRESH": 4},
    ),
    enum(
        "activecontour",
        "Active contour method (with extsfinder ACTIVE-CONTOUR)",
        "CHANVESE",
        ("CHANVESE", "LRAC"),
        EXTENDED,
        codes={"CHANVESE": 1, "LRAC": 2},
    ),
)

_SALIENCY = (
    int_option(
        "sp-size",
        "Superpixel size in pixels for hierarchical clustering",
        20,
        5,
        10000,
        EXTENDED,
        subcategory=SALIENCY,
    ),
    float_option(
        "sp-beta",
        "Superpixel regularisation parameter (beta) for hierarchical clustering",
        1.0,
        1e-10,
        1e10,
        EXTENDED,
        subcategory=SALIENCY,
    ),
    int_option(
        "sp-minarea",
        "Minimum superpixel area in pixels for hierarchical clustering",
        10,
        1,
        10000,
        EXTENDED,
        subcategory=SALIENCY,
    ),
    flag(
        "saliency-nooptimalthr",
        "Threshold the saliency map at its median instead of the optimal threshold",
        EXTENDED,
        subcategory=SALIENCY,
    ),
    float_option(
        "saliency-thr",
        "Saliency threshold, as a multiple of the optimal (or median) threshold",
        2.8,
        0,
        10,
        EXTENDED,
        subcategory=SALIENCY,
    ),
    int_option(
        "saliency-minreso",
        "Superpixel size in pixels at the finest saliency scale",
        20,
        1,
        1000,
        EXTENDED,
        subcategory=SALIENCY,
    ),
    int_option(
        "saliency-maxreso",
        "Superpixel size in pixels at the coarsest saliency scale",
        60,
        1,
        1000,
        EXTENDED,
        subcategory=SALIENCY,
    ),
    int_option(
        "saliency-resostep",
        "Superpixel size step in pixels between saliency scales",
        10,
        1,
        100,
        EXTENDED,
        subcategory=SALIENCY,
    ),
    float_option(
        "saliency-nn",
        "Fraction of the most similar neighbouring regions used for the saliency",
        1.0,
        0,
        1,
        EXTENDED,
        advanced=True,
        subcategory=SALIENCY,
    ),
    flag(
        "saliency-usebkgmap",
        "Use the background map in the saliency computation",
        EXTENDED,
        advanced=True,
        subcategory=SALIENCY,
    ),
    flag(
        "saliency-usermsmap",
        "Use the noise map in the saliency computation",
        EXTENDED,
        advanced=True,
        subcategory=SALIENCY,
    ),
    flag(
        "saliency-userobustpars",
        "Use robust statistics in the saliency computation",
        EXTENDED,
        subcategory=SALIENCY,
    ),
)

_CONTOUR = (
    int_option(
        "ac-niters",
        "Maximum number of active contour iterations",
        1000,
        1,
        100000,
        EXTENDED,
        subcategory=CONTOUR,
    ),
    enum(
        "ac-levelset",
        "Initial level set of the active contour",
        "CIRCLE",
        ("CIRCLE", "CHECKERBOARD", "SALIENCY"),
        EXTENDED,
        codes={"CIRCLE": 1, "CHECKERBOARD": 2, "SALIENCY": 3},
        subcategory=CONTOUR,
    ),
    float_option(
        "ac-levelsetsize",
        "Size of the initial level set, as a fraction of the image size",
        0.1,
        0,
        1,
        EXTENDED,
        subcategory=CONTOUR,
    ),
    float_option(
        "ac-tolerance",
        "Convergence tolerance of the active contour",
        0.1,
        0,
        1,
        EXTENDED,
        subcategory=CONTOUR,
    ),
    int_option(
        "cv-nitersinner",
        "Maximum number of inner iterations of the Chan-Vese algorithm",
        5,
        0,
        100000,
        EXTENDED,
        advanced=True,
        subcategory=CONTOUR,
    ),
    int_option(
        "cv-nitersreinit",
        "Maximum number of re-initialisation iterations of the Chan-Vese algorithm",
        5,
        0,
        100000,
        EXTENDED,
        advanced=True,
        subcategory=CONTOUR,
    ),
    float_option(
        "cv-timestep", "Time step of the Chan-Vese algorithm", 0.007, 0, 1000, EXTENDED, subcategory=CONTOUR
    ),
    float_option(
        "cv-wsize", "Window size of the Chan-Vese algorithm", 1.0, 0, 1000, EXTENDED, subcategory=CONTOUR
    ),
    float_option(
        "cv-lambda1",
        "Chan-Vese weight (lambda1) of the region inside the contour",
        1.0,
        0,
        100,
        EXTENDED,
        subcategory=CONTOUR,
    ),
    float_option(
        "cv-lambda2",
        "Chan-Vese weight (lambda2) of the region outside the contour",
        2.0,
        0,
        100,
        EXTENDED,
        subcategory=CONTOUR,
    ),
    float_option("cv-mu", "Chan-Vese contour length weight (mu)", 0.5, 0, 100, EXTENDED, subcategory=CONTOUR),
    float_option("cv-nu", "Chan-Vese area weight (nu)", 0.0, 0, 100, EXTENDED, subcategory=CONTOUR),
    float_option(
        "cv-p", "Chan-Vese exponent (p) of the length term", 1.0, 0, 100, EXTENDED, subcategory=CONTOUR
    ),
)

_WAVELET = (
    int_option(
        "wtscalemin",
        "Smallest wavelet scale used in the extended source search",
        3,
        1,
        10,
        EXTENDED,
        subcategory=WAVELET,
    ),
    int_option(
        "wtscalemax",
        "Largest wavelet scale used in the extended source search",
        6,
        1,
        10,
        EXTENDED,
        subcategory=WAVELET,
    ),
)

_RUN = (
    enum(
        "loglevel",
        "Logging level",
        "INFO",
        ("INFO", "DEBUG", "WARN", "ERROR", "OFF"),
        RUN,
    ),
    flag("no-logredir", "Do not redirect the logs to a file (no log file among the outputs)", RUN),
    flag("no-mpi", "Run without MPI", RUN),
    int_option("nproc", "Number of MPI processes per node", 1, 1, 1000, RUN),
    int_option("nthreads", "Number of OpenMP threads (-1: all the node's cores)", 1, -1, 1000, RUN),
    flag("tilesplit", "Split the map into tiles processed in parallel", RUN),
    # caesar-rest's quirk, kept in describe(): an int whose default and bounds are floats (module docstring)
    Option("tilesize", "int", "Tile size in pixels (0: no tiles)", 0.0, 0.0, 1e7, category=RUN),
    float_option(
        "tilestep", "Step between tiles as a fraction of the tile size (1: no overlap)", 1.0, 0.001, 1, RUN
    ),
    flag("mergeedgesources", "Merge the sources that cross tile edges", RUN),
    flag("no-mergesources", "Do not merge overlapping sources within each tile", RUN),
)

APP = App(
    name="caesar",
    description="CAESAR compact and extended source finder with Gaussian fitting (caesar-rest's image)",
    runner="container",
    image="sriggi/caesar-job:latest",
    default_args=("--run", "--save-summaryplot", "--save-regions", "--save-catalog-to-json"),
    input_flag="--inputfile",
    options=(
        *_OUTPUT,
        *_IMGREAD,
        *_IMGSTATS,
        *_IMGBKG,
        *_COMPACT,
        *_SELECTION,
        *_NESTED,
        *_FITTING,
        *_IMGRES,
        *_IMGSMOOTH,
        *_EXTENDED,
        *_SALIENCY,
        *_CONTOUR,
        *_WAVELET,
        *_RUN,
    ),
)
