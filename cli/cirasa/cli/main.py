"""``cirasa``: the services, the all-in-one dev mode, the demo and the client commands."""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cirasa.cli import (
    app_commands,
    contract_commands,
    events_command,
    job_commands,
    offers,
    product_commands,
    tiled_commands,
)
from cirasa.cli.app_commands import check_app
from cirasa.cli.client import CaesarClient
from cirasa.cli.errors import EXIT_FAILED, notice
from cirasa.cli.follow import server_flag
from cirasa.cli.group import CliGroup
from cirasa.cli.params import DEFAULT_SERVER, AppName, AppOptions, Server, parse_options
from cirasa.cli.sim.command import sim
from cirasa.cli.submission import FileOption, ImageArg, check_input, input_file, submit_and_follow, submit_job
from cirasa.common.logs import configure_logging
from cirasa.common.settings import Settings, load_settings

app = typer.Typer(
    help="CIRASA execution platform: source finding over an event-driven job system.",
    no_args_is_help=True,
    add_completion=False,
    epilog="Exit codes: 0 done; 1 the job (or session) did not succeed; 2 a bad argument or a request "
    "the server refused; 3 the server unreachable or failing; 130 stopped by Ctrl-C.",
    cls=CliGroup,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True)

Port = Annotated[int | None, typer.Option("--port", "-p", help="HTTP port (default from CIRASA_HTTP_PORT)")]


def _settings(port: int | None, **extra: Any) -> Settings:
    overrides: dict[str, Any] = dict(extra)
    if port is not None:
        overrides["http_port"] = port
    settings = load_settings(**overrides)
    configure_logging(settings.log_level, settings.log_json)
    return settings


def _service_command(name: str) -> None:
    def command(port: Port = None) -> None:
        from cirasa.cli.runtime import run

        run([name], _settings(port), memory=False)

    command.__doc__ = f"Run the {name} service against RabbitMQ (and MongoDB when CIRASA_MONGODB_URL is set)."
    app.command(name)(command)


for _name in ("gateway", "planner", "scheduler", "monitor", "accounting"):
    _service_command(_name)

app.command("sim")(sim)


@app.command()
def dev(port: Port = None) -> None:
    """All five services in one process, in memory: no RabbitMQ, no MongoDB. Ctrl-C stops it."""
    from cirasa.cli.runtime import SERVICES, run

    settings = _settings(port, log_json=False, log_level="WARNING")
    console.print(
        f"CIRASA dev mode: http://{settings.http_host}:{settings.http_port}/ "
        f"(API under /caesar/api/v1.0, docs at /docs); data in {settings.data_dir.resolve()}"
    )
    run(list(SERVICES), settings, memory=True)


@app.command()
def demo(
    size: Annotated[int, typer.Option(help="image size in pixels")] = 512,
    sources: Annotated[int, typer.Option(help="number of injected sources")] = 40,
    app_name: Annotated[str, typer.Option("--app", help="finder to run")] = "sep",
) -> None:
    """The main job, end to end, with nothing external: simulate a radio map, start the platform in
    memory, upload the map, run a source finder, and print the catalogue it found."""
    from cirasa.cli import demo as steps  # the steps, and where the time goes

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = Path(tempfile.mkdtemp(prefix="cirasa-demo-"))
    dirs = {"data_dir": work / "data", "jobs_dir": work / "jobs"}
    monitor = {"poll_interval_s": steps.POLL_S}
    settings = _settings(port, log_json=False, log_level="ERROR", monitor=monitor, **dirs)
    threading.Thread(target=steps.serve_in_memory, args=(settings,), daemon=True).start()
    image = work / "synthetic.fits"
    injected = steps.simulate(image, size, sources)
    client = CaesarClient(f"http://127.0.0.1:{port}")
    _wait_ready(client, timeout_s=60)
    status = steps.run_job(client, image, app_name)
    if status["state"] != "SUCCESS":
        console.print(f"[red]job ended {status['state']}: {status['status']}[/]")
        steps.exit_now(1)
    steps.report(client, status, app_name, injected, work)
    steps.exit_now()


def _wait_ready(client: CaesarClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if client.http.get("/apps").status_code == 200:
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            console.print("[red]the platform did not come up[/]")
            raise typer.Exit(1)
        time.sleep(0.1)


@app.command()
def submit(
    image: ImageArg = None,
    app_name: AppName = "sep",
    option: AppOptions = None,
    file: FileOption = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow the job to its end")] = False,
    server: Server = DEFAULT_SERVER,
) -> None:
    """Upload IMAGE (or take --file) and run APP on it; with --wait, follow it to the end.

    Prints the server's reply (JSON) on stdout; with --wait, the job's final status."""
    check_input(image, file)
    options = parse_options(option or [])
    with CaesarClient(server) as client:
        check_app(client, app_name)
        if wait:
            status = submit_and_follow(client, console, image, app_name, options, file)
            print(json.dumps(status))
            raise typer.Exit(0 if status["state"] == "SUCCESS" else EXIT_FAILED)
        job = submit_job(client, app_name, input_file(client, image, file), options)
    print(json.dumps(job))
    job_id = job["job_id"]
    notice(f"job {job_id} accepted — `cirasa status {job_id}{server_flag(server)}` to follow it")


app.command()(offers.offers)
app.command()(job_commands.jobs)
app.command()(job_commands.status)
app.command()(job_commands.cancel)
app.command()(product_commands.logs)
app.command()(product_commands.sources)
app.command()(product_commands.fetch)
app.command()(job_commands.files)
app.command()(app_commands.apps)
app.command()(tiled_commands.tiled)


def _simulate_realistic(
    out: Path, seed: int, truth: Path | None, started: float, common: dict[str, Any], extra: dict[str, Any]
) -> None:
    """`cirasa simulate --realistic`: issue 15's map unless the options say otherwise."""
    from cirasa.finders.sky_model import RealisticSky, simulate_realistic_sky

    if common["noise_jy"] <= 0:
        raise ValueError("--realistic needs --noise-ujy > 0: its faintest sources are set in noise rms")
    sky = RealisticSky(**{k: v for k, v in common.items() if v is not None}, **extra)
    sources = simulate_realistic_sky(out, sky, seed=seed, truth_path=truth)
    n_extended = sum(s.type == "extended" for s in sources)
    n_5sigma = sum(s.snr >= 5.0 for s in sources)
    console.print(
        f"wrote {out} with {len(sources)} sources ({n_extended} extended, {n_5sigma} with a peak >= 5 sigma) "
        f"in {time.perf_counter() - started:.1f} s"
    )


@app.command()
def simulate(
    out: Path,
    size: Annotated[
        int | None, typer.Option(help="image size in pixels [default: 512, or 900 with --density]")
    ] = None,
    sources: Annotated[
        int | None, typer.Option(help="number of sources, log-uniform peaks [default: 50]")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    truth: Annotated[Path | None, typer.Option(help="also write the truth catalogue as CSV")] = None,
    density: Annotated[
        float | None,
        typer.Option(help="sources per deg²: the CIRASA test-campaign recipe (e.g. 250 or 2500)"),
    ] = None,
    extended_fraction: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="fraction of extended sources [default: 0.1 with --density, else 0]"
        ),
    ] = None,
    pixel_arcsec: Annotated[float, typer.Option(min=0.0, help="pixel size in arcsec")] = 4.0,
    beam_arcsec: Annotated[float, typer.Option(min=0.0, help="beam FWHM in arcsec")] = 15.0,
    noise_ujy: Annotated[float, typer.Option(min=0.0, help="noise rms in µJy/beam")] = 20.0,
    white_noise: Annotated[
        bool, typer.Option("--white-noise", help="independent pixels instead of beam-correlated noise")
    ] = False,
    realistic: Annotated[
        bool,
        typer.Option(
            "--realistic",
            help="a crowded sky down to the noise: power-law counts, blending, optional diffuse emission "
            "[default size 800, density 2500]",
        ),
    ] = False,
    min_snr: Annotated[
        float | None, typer.Option(help="--realistic: faintest true peak, in noise rms [default: 3]")
    ] = None,
    counts_slope: Annotated[
        float | None, typer.Option(help="--realistic: dN/dS ~ S^-slope [default: 1.6]")
    ] = None,
    max_flux_jy: Annotated[
        float | None, typer.Option(help="--realistic: brightest integrated flux in Jy [default: 1]")
    ] = None,
    diffuse_ujy: Annotated[
        float | None, typer.Option(help="--realistic: rms of the diffuse emission in µJy/beam [default: 0]")
    ] = None,
    min_separation_beams: Annotated[
        float | None, typer.Option(help="--realistic: minimum source separation in beams [default: 0]")
    ] = None,
) -> None:
    """Write a synthetic radio map (Gaussian sources, noise, a beam and WCS in the header).

    With --density, the CIRASA test-campaign sky: exponential fluxes from 50 µJy to 1 Jy, extended
    sources of 1-3 beams, beam-correlated noise, sources 2 beams apart; with --realistic, a crowded sky
    whose counts follow dN/dS ~ S^-slope down to --min-snr, 2-4 beam extended sources, overlapping
    sources and optional diffuse emission (its truth CSV adds snr and extent_beams); otherwise
    --sources point sources with log-uniform peaks on white noise."""
    from cirasa.finders.imaging import synthetic_image, write_truth_csv
    from cirasa.finders.simulation import simulate_sky

    noise_jy = noise_ujy / 1e6
    started = time.perf_counter()
    # option name -> (RealisticSky field, value) of the options only --realistic takes
    realistic_only = {
        "--min-snr": ("min_snr", min_snr),
        "--counts-slope": ("counts_slope", counts_slope),
        "--max-flux-jy": ("max_flux_jy", max_flux_jy),
        "--diffuse-ujy": ("diffuse_jy", None if diffuse_ujy is None else diffuse_ujy / 1e6),
        "--min-separation-beams": ("min_separation_beams", min_separation_beams),
    }
    given = {option: pair for option, pair in realistic_only.items() if pair[1] is not None}
    try:
        if realistic:
            if sources is not None:
                raise ValueError("give either --sources or --realistic, not both")
            common = {
                "size": size,
                "density_per_deg2": density,
                "extended_fraction": extended_fraction,
                "pixel_arcsec": pixel_arcsec,
                "beam_arcsec": beam_arcsec,
                "noise_jy": noise_jy,
                "correlated_noise": not white_noise,
            }
            _simulate_realistic(out, seed, truth, started, common, dict(given.values()))
            return
        if given:
            raise ValueError(f"options only for --realistic: {', '.join(given)} (add --realistic)")
        if density is not None:
            if sources is not None:
                raise ValueError("give either --sources or --density, not both")
            sky = simulate_sky(
                out,
                size=900 if size is None else size,
                density_per_deg2=density,
                pixel_arcsec=pixel_arcsec,
                beam_arcsec=beam_arcsec,
                noise_jy=noise_jy,
                extended_fraction=0.1 if extended_fraction is None else extended_fraction,
                seed=seed,
                correlated_noise=not white_noise,
                truth_path=truth,
            )
            n_extended = sum(s.type == "extended" for s in sky)
            console.print(
                f"wrote {out} with {len(sky)} sources ({n_extended} extended) "
                f"in {time.perf_counter() - started:.1f} s"
            )
            return
        injected = synthetic_image(
            out,
            size=512 if size is None else size,
            n_sources=50 if sources is None else sources,
            seed=seed,
            noise_jy=noise_jy,
            beam_arcsec=beam_arcsec,
            pixel_arcsec=pixel_arcsec,
            extended_fraction=0.0 if extended_fraction is None else extended_fraction,
        )
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    if truth:
        write_truth_csv(truth, injected)
    console.print(f"wrote {out} with {len(injected)} sources")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.3f}%"


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@app.command()
def compare(
    catalog: Annotated[Path, typer.Argument(help="the detections: catalogue JSON or CSV")],
    reference: Annotated[
        Path, typer.Argument(help="the truth CSV of `cirasa simulate`, or another finder's catalogue")
    ],
    radius_arcsec: Annotated[
        float, typer.Option(min=0.0, help="match radius (1 beam FWHM of the test maps)")
    ] = 15.0,
    snr_min: Annotated[
        float, typer.Option(min=0.0, help="targets: reference point sources with peak >= snr-min x noise")
    ] = 5.0,
    noise_ujy: Annotated[
        float | None,
        typer.Option(min=0.0, help="noise rms in µJy/beam [default: from the reference]"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Cross-match a catalogue with the truth or another catalogue: completeness, reliability, accuracy.

    Matching is on the sky, one to one, closest pair first. Completeness counts the reference point
    sources with peak >= snr-min x noise; reliability, false and duplicate detections count all
    detections; offsets and peak ratios are medians over the matched pairs."""
    from cirasa.finders.compare import CompareError, load_table
    from cirasa.finders.compare import compare as compare_tables

    try:
        result = compare_tables(
            load_table(catalog),
            load_table(reference),
            radius_arcsec=radius_arcsec,
            snr_min=snr_min,
            noise_jy=None if noise_ujy is None else noise_ujy / 1e6,
        )
    except CompareError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
        return
    noise = "-" if result.noise_jy is None else f"{result.noise_jy * 1e6:.3g} µJy/beam"
    table = Table(
        title=f"{catalog.name} ({result.detections_label}) against {reference.name} "
        f'({result.reference_label}), radius {result.radius_arcsec:g}", '
        f"targets >= {result.snr_min:g} x {noise}"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("detections", str(result.n_detections)),
        ("reference sources", str(result.n_reference)),
        ("targets", str(result.n_targets)),
        ("matched", str(result.matched)),
        ("matched targets", str(result.matched_targets)),
        ("completeness", _percent(result.completeness)),
        ("reliability", _percent(result.reliability)),
        ("false", str(result.false)),
        ("duplicates", str(result.duplicates)),
        ("median offset (arcsec)", _number(result.median_offset_arcsec)),
        ("median peak ratio", _number(result.median_peak_ratio)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


@app.command()
def merge(
    catalogs: Annotated[list[Path], typer.Argument(help="two or more catalogues (JSON or CSV)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the merged catalogue (JSON)")],
    radius_arcsec: Annotated[float, typer.Option(min=0.0, help="match radius")] = 15.0,
) -> None:
    """Merge several finders' catalogues into one JSON, with per-source provenance.

    Each merged source lists the finders that found it, with their identifiers and fluxes, and sits
    at the mean of their positions."""
    from cirasa.finders.compare import CompareError, load_table
    from cirasa.finders.compare import merge as merge_tables

    if len(catalogs) < 2:
        console.print("[red]give at least two catalogues to merge[/]")
        raise typer.Exit(2)
    try:
        merged = merge_tables([load_table(p) for p in catalogs], catalogs, radius_arcsec=radius_arcsec)
    except CompareError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    out.write_text(merged.model_dump_json(indent=2) + "\n")
    by_count: dict[int, int] = {}
    for source in merged.sources:
        by_count[source.n_finders] = by_count.get(source.n_finders, 0) + 1
    found = ", ".join(f"{n} by {k}" for k, n in sorted(by_count.items(), reverse=True))
    console.print(f"wrote {out}: {len(merged.sources)} sources ({found or 'none'})")


app.command()(contract_commands.schemas)
app.command()(contract_commands.asyncapi)
app.command()(events_command.events)


@app.command()
def up(port: Port = None) -> None:
    """The five services as five processes against RabbitMQ (MongoDB when configured); Ctrl-C stops."""
    from cirasa.cli.launcher import ProcessStack

    settings = _settings(port)
    warning = memory_store_warning(settings)
    if warning:
        console.print(f"[bold red]{warning}[/]")
    workdir = Path.cwd()
    stack = ProcessStack(workdir, env={}, gateway_port=settings.http_port)
    try:
        stack.start()
        console.print(f"five services up; gateway at {stack.gateway_url}; logs in {workdir}/*.log")
        while all(p.poll() is None for p in stack.processes.values()):
            time.sleep(1)
        console.print("[red]a service exited; stopping the others[/]")
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


def memory_store_warning(settings: Settings) -> str | None:
    """What ``up`` says when no MongoDB is configured (None when one is)."""
    if settings.mongodb_url:
        return None
    return (
        "WARNING: CIRASA_MONGODB_URL is not set, so every service keeps its state in memory and it "
        "dies with its process: a restarted service forgets its jobs, bookings and dispatches, and "
        "accepted jobs can be lost. Set CIRASA_MONGODB_URL for anything but a demo."
    )


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
