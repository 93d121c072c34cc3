"""The command group's last line of defence: whatever a command raises is one line and an exit code."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from cirasa.cli.errors import CliError
from cirasa.cli.group import CliGroup

demo_app = typer.Typer(cls=CliGroup, add_completion=False)
runner = CliRunner()


@demo_app.command()
def crash() -> None:
    raise RuntimeError("boom\nsecond line")


@demo_app.command()
def missing() -> None:
    open("/nonexistent/cirasa/file.fits")  # noqa: SIM115


@demo_app.command()
def refuse() -> None:
    raise CliError("nothing to do", exit_code=3)


def test_an_unexpected_error_is_one_line_that_says_how_to_see_more(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIRASA_DEBUG", raising=False)
    result = runner.invoke(demo_app, ["crash"])
    assert result.exit_code == 1
    assert result.stderr == "error: RuntimeError: boom second line (CIRASA_DEBUG=1 shows the traceback)\n"


def test_with_cirasa_debug_the_traceback_comes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRASA_DEBUG", "1")
    result = runner.invoke(demo_app, ["crash"])
    assert isinstance(result.exception, RuntimeError)


def test_a_file_error_names_the_file() -> None:
    result = runner.invoke(demo_app, ["missing"])
    assert result.exit_code == 1
    assert result.stderr == "error: /nonexistent/cirasa/file.fits: No such file or directory\n"


def test_a_cli_error_keeps_its_exit_code() -> None:
    result = runner.invoke(demo_app, ["refuse"])
    assert (result.exit_code, result.stderr) == (3, "error: nothing to do\n")
