"""Writing a report directory: everything or nothing.

The files are written into a fresh temporary directory beside the target and only
renamed into place once all of them are complete, so an error (the database going away,
Chromium failing) never leaves a half-written report. An existing report directory is
replaced: renamed aside, the new one renamed in, the old one removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from pathlib import Path

from hybridcon.core.report.figures import Figures
from hybridcon.errors import HybridconError
from hybridcon.report import render

FORMATS = ("html", "csv", "json", "pdf")
PDF_TIMEOUT = 120.0


class ReportError(HybridconError):
    """The report could not be written (a clear message, nothing half-written)."""


def parse_formats(text: str) -> tuple[str, ...]:
    """``html,csv,json,pdf`` (any subset, any order) as a tuple.

    Raises:
        ReportError: an unknown format or none.
    """
    wanted = tuple(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown or not wanted:
        raise ReportError(
            f"unknown format {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}"
        )
    return wanted


def chromium_pdf(html_file: Path, pdf_file: Path, *, chromium: str = "chromium") -> None:
    """Print ``html_file`` to ``pdf_file`` (A4) with headless Chromium.

    The page has no external resources, so Chromium makes no request. Its own profile
    goes to a temporary directory removed afterwards.

    Raises:
        ReportError: Chromium is missing, failed or wrote no PDF.
    """
    with tempfile.TemporaryDirectory(prefix="hybridcon-chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf_file}",
            html_file.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
                command, capture_output=True, timeout=PDF_TIMEOUT, check=False
            )
        except FileNotFoundError:
            raise ReportError(
                f"the PDF needs Chromium ({chromium!r} was not found); install the Debian "
                "package chromium (make system-deps) or leave pdf out of --format"
            ) from None
        except subprocess.TimeoutExpired:
            raise ReportError(
                f"Chromium did not print the PDF within {PDF_TIMEOUT:.0f} s"
            ) from None
    if done.returncode != 0 or not pdf_file.exists() or pdf_file.stat().st_size == 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        raise ReportError(f"Chromium could not print the PDF: {' '.join(tail) or 'no output'}")


PdfPrinter = Callable[[Path, Path], None]


def write_report(
    out: Path,
    figures: Figures,
    *,
    formats: Iterable[str],
    title: str,
    tz: tzinfo,
    lang: str,
    generated: datetime,
    delimiter: str = ",",
    pdf: PdfPrinter = chromium_pdf,
) -> list[Path]:
    """Write the report's files into ``out`` (created or replaced as a whole).

    Files: ``report.html``; ``<table>.csv`` per table; ``report.json``; ``report.pdf``
    (printed from the HTML, which is then kept too only when asked for).

    Returns:
        The files written, inside ``out``.

    Raises:
        ReportError: a file could not be written or printed (``out`` is then unchanged).
    """
    wanted = set(formats)
    out = out.resolve()
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except OSError as exc:
        raise ReportError(f"cannot write into {parent}: {exc.strerror or exc}") from None
    try:
        page = render.html(figures, title=title, tz=tz, lang=lang, generated=generated)
        if "html" in wanted or "pdf" in wanted:
            (work / "report.html").write_text(page, "utf-8")
        if "csv" in wanted:
            for table in figures.tables:
                (work / f"{table.id}.csv").write_text(
                    render.csv_text(table, delimiter=delimiter), "utf-8"
                )
        if "json" in wanted:
            (work / "report.json").write_bytes(
                render.json_bytes(figures, title=title, generated=generated)
            )
        if "pdf" in wanted:
            pdf(work / "report.html", work / "report.pdf")
            if "html" not in wanted:
                (work / "report.html").unlink()
        # mkdtemp makes the directory 0700; a report directory is as readable as any
        # file the user writes (their umask decides for the files inside).
        os.chmod(work, 0o755)  # noqa: S103
        _replace(work, out)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise ReportError(f"cannot write the report: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return sorted(out.iterdir())


def _replace(new: Path, out: Path) -> None:
    if not out.exists():
        new.rename(out)
        return
    if not out.is_dir():
        raise ReportError(f"{out} exists and is not a directory")
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    old.rmdir()
    out.rename(old)
    try:
        new.rename(out)
    except OSError:
        old.rename(out)  # put the previous report back
        raise
    shutil.rmtree(old, ignore_errors=True)
