"""The demo's catalogue table says how many of the sources it shows, brightest first."""

from __future__ import annotations

from rich.console import Console

from cirasa.cli.demo import SHOWN, catalogue_table


def rendered(rows: list[dict[str, object]]) -> str:
    console = Console(width=120, record=True)
    console.print(catalogue_table(rows, "sep", 40))
    return console.export_text()


def test_a_long_catalogue_says_how_many_rows_it_shows() -> None:
    rows = [{"source_id": f"S{i}", "ra_deg": 150.0, "dec_deg": -30.0, "snr": float(i)} for i in range(40)]
    text = rendered(rows)
    assert "40 sources found by sep (40 injected)" in text
    assert f"showing {SHOWN} of 40 sources, highest SNR first" in text
    ids = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│ S")]
    assert ids == [f"S{i}" for i in range(39, 39 - SHOWN, -1)]


def test_a_short_catalogue_shows_all_and_says_nothing_more() -> None:
    text = rendered([{"source_id": "S1", "snr": 9.0}, {"source_id": "S2", "snr": None}])
    assert "2 sources found by sep" in text and "showing" not in text
