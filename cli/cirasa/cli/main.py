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

from cirasa.cli.client import ApiError, CaesarClient, parse_options
from cirasa.common.logs import configure_logging
from cirasa.common.settings import Settings, load_settings

app = typer.Typer(
    help="CIRASA execution platform: source finding over an event-driven job system.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

Server = Annotated[str, typer.Option("--server", "-s", envvar="CIRASA_SERVER", help="gateway base URL")]
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
    from cirasa.cli.runtime import SERVICES, run
    from cirasa.common.imaging import synthetic_image

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = Path(tempfile.mkdtemp(prefix="cirasa-demo-"))
    settings = _settings(
        port, log_json=False, log_level="ERROR", data_dir=work / "data", jobs_dir=work / "jobs"
    )
    threading.Thread(target=run, args=(list(SERVICES), settings, True), daemon=True).start()
    image = work / "synthetic.fits"
    truth = synthetic_image(image, size=size, n_sources=sources, seed=1)
    console.print(
        f"[bold]1.[/] simulated {image.name}: {size}x{size} px, {len(truth)} point sources, "
        '15" beam, 20 µJy/beam noise'
    )
    client = CaesarClient(f"http://127.0.0.1:{port}")
    _wait_ready(client, timeout_s=30)
    status = _submit_and_follow(client, image, app_name, {"seedthr": 5.0} if app_name == "sep" else {})
    if status["state"] != "SUCCESS":
        console.print(f"[red]job ended {status['state']}: {status['status']}[/]")
        raise typer.Exit(1)
    catalog = client.sources(status["job_id"])
    rows = catalog.get("sources", [])
    table = Table(title=f"{len(rows)} sources found by {app_name} ({len(truth)} injected)")
    for col in ("source_id", "ra_deg", "dec_deg", "peak_flux_jy", "snr"):
        table.add_column(col)
    for row in rows[:15]:
        table.add_row(*(_fmt(row.get(c)) for c in ("source_id", "ra_deg", "dec_deg", "peak_flux_jy", "snr")))
    Console().print(table)
    archive = client.fetch(status["job_id"], work / f"job_{status['job_id']}.tar.gz")
    console.print(
        f"[bold]4.[/] products: {settings.jobs_dir / 'anonymous' / ('job_' + status['job_id'])}\n"
        f"   archive: {archive}"
    )


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


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


def _submit_and_follow(
    client: CaesarClient, image: Path, app_name: str, options: dict[str, Any]
) -> dict[str, Any]:
    up = client.upload(image)
    console.print(f"[bold]2.[/] uploaded {image.name} as file {up['uuid']} ({up['size']:.2f} MiB)")
    job = client.submit(app_name, up["uuid"], options)
    console.print(f"[bold]3.[/] job {job['job_id']} accepted (202), app {app_name}")
    started = time.monotonic()

    def show(status: dict[str, Any]) -> None:
        console.print(f"   {time.monotonic() - started:6.1f} s  {status['state']:<9} {status['status']}")

    return client.wait(job["job_id"], show)


@app.command()
def submit(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    app_name: Annotated[str, typer.Option("--app", "-a")] = "sep",
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="app option key=value")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait")] = False,
    server: Server = "http://127.0.0.1:8000",
) -> None:
    """Upload IMAGE and run APP on it; with --wait, follow it to the end."""
    client = CaesarClient(server)
    try:
        options = parse_options(option or [])
        if not wait:
            up = client.upload(image)
            job = client.submit(app_name, up["uuid"], options)
            print(json.dumps(job))
            return
        status = _submit_and_follow(client, image, app_name, options)
        print(json.dumps(status))
        raise typer.Exit(0 if status["state"] == "SUCCESS" else 1)
    except (ApiError, ValueError, OSError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc


@app.command()
def jobs(server: Server = "http://127.0.0.1:8000") -> None:
    """List your jobs."""
    table = Table()
    for col in ("job_id", "app", "state", "status", "elapsed_time", "submit_date"):
        table.add_column(col)
    for job in CaesarClient(server).jobs():
        table.add_row(
            *(
                str(job.get(c, ""))
                for c in ("job_id", "app", "state", "status", "elapsed_time", "submit_date")
            )
        )
    Console().print(table)


@app.command()
def fetch(
    job_id: str,
    out: Annotated[Path | None, typer.Option("--out", "-o")] = None,
    server: Server = "http://127.0.0.1:8000",
) -> None:
    """Download a finished job's directory as job_<id>.tar.gz."""
    try:
        path = CaesarClient(server).fetch(job_id, out or Path(f"job_{job_id}.tar.gz"))
    except ApiError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    console.print(f"saved {path}")


@app.command()
def simulate(
    out: Path,
    size: Annotated[int, typer.Option()] = 512,
    sources: Annotated[int, typer.Option()] = 50,
    seed: Annotated[int, typer.Option()] = 0,
    truth: Annotated[Path | None, typer.Option(help="also write the truth catalogue as CSV")] = None,
) -> None:
    """Write a synthetic radio map (Gaussian sources, noise, a beam and WCS in the header)."""
    from cirasa.common.imaging import synthetic_image, write_truth_csv

    try:
        injected = synthetic_image(out, size=size, n_sources=sources, seed=seed)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    if truth:
        write_truth_csv(truth, injected)
    console.print(f"wrote {out} with {len(injected)} sources")


@app.command()
def asyncapi(out: Annotated[Path, typer.Option("--out", "-o")] = Path("docs/asyncapi.json")) -> None:
    """Write the AsyncAPI document of the event contract (generated by FastStream from the code)."""
    from cirasa.cli.asyncapi import asyncapi_document

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(asyncapi_document())
    console.print(f"wrote {out}")


@app.command()
def up(port: Port = None) -> None:
    """The five services as five processes against RabbitMQ (MongoDB when configured); Ctrl-C stops."""
    from cirasa.cli.launcher import ProcessStack

    settings = _settings(port)
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


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
