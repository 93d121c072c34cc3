"""A failed job's reason: the last meaningful line of its stderr (no blank lines, no traceback frames)."""

from __future__ import annotations

from pathlib import Path

from cirasa.backends.stderr_reason import (
    REASON_LIMIT,
    STDERR_TAIL_BYTES,
    last_meaningful_line,
    stderr_reason,
    with_reason,
)

TRACEBACK = """\
reading /data/anonymous/3f2a.png
Traceback (most recent call last):
  File "/app/sep.py", line 91, in load_image
    raise InputError(f"not a readable FITS file: {path.name}")
    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
cirasa.finders.runners.sep.InputError: not a readable FITS file: sky.png (Empty or corrupt FITS file)


"""


def test_the_last_line_of_a_traceback_is_the_reason() -> None:
    assert last_meaningful_line(TRACEBACK) == (
        "cirasa.finders.runners.sep.InputError: "
        "not a readable FITS file: sky.png (Empty or corrupt FITS file)"
    )


def test_frames_blank_lines_and_chained_headers_are_skipped() -> None:
    text = (
        "ValueError: first\n\n"
        "During handling of the above exception, another exception occurred:\n\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 3, in <module>\n'
        "    f()\n"
        "    ~^^\n"
        "\n   \n"
    )
    assert last_meaningful_line(text) == "ValueError: first"
    assert last_meaningful_line("\n  \n\t\n") == ""
    assert last_meaningful_line('  File "x.py", line 3, in <module>\n') == ""


def test_a_long_line_is_capped_and_squeezed() -> None:
    line = "sep_finder: error:   " + "x" * 1000
    reason = last_meaningful_line(line)
    assert len(reason) == REASON_LIMIT and reason.endswith("…")
    assert reason.startswith("sep_finder: error: xxx")


def test_reads_only_the_tail_of_a_big_file(tmp_path: Path) -> None:
    path = tmp_path / "stderr.log"
    last = "sep_finder: error: no 2-D image data in sky.fits"
    path.write_text("noise\n" * (STDERR_TAIL_BYTES // 3) + last + "\n")
    assert stderr_reason(path) == last
    assert stderr_reason(tmp_path / "missing.log") == ""


def test_the_reason_comes_first_then_how_the_job_ended() -> None:
    assert with_reason("Process terminated with return code 2", "bad input") == (
        "bad input (process terminated with return code 2)"
    )
    assert with_reason("Process terminated with return code 2", "") == "Process terminated with return code 2"
