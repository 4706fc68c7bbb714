"""One self-contained HTML page for the neuron analysis (`cots neurons`): the verdict in plain
words, a summary, a results table, the protocol and the figures. The figures are embedded
(base64 ``data:`` URIs), the CSS is inline, and there are no scripts, fonts or URLs, so the
page alone can be mailed, moved, opened offline and printed. Each image also names the file
beside the page it was drawn to (``data-file``), for those who want the PNGs."""

from __future__ import annotations

import base64
import html
import numbers
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Mapping, Sequence
from urllib.parse import quote, unquote

__all__ = ["Figure", "write_report", "referenced_files", "embedded_images"]

ORACLE = "(oracle)"
DASH = "\u2014"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.4em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #e4e4e4; text-align: left; }
table.results td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.results thead th { border-bottom: 2px solid #999; }
table.summary th { font-weight: 600; color: #555; }
caption { caption-side: bottom; font-size: 0.9em; color: #555; text-align: left; padding-top: 0.4em; }
tr.oracle td { font-style: italic; color: #888; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.92em; color: #444; margin-top: 0.3em; }
footer { margin-top: 2.5em; font-size: 0.8em; color: #888; }
div.verdict { border: 1px solid #ccc; border-radius: 4px; padding: 0.3em 1em; margin: 1em 0; background: #fafafa; }
div.verdict p { margin: 0.5em 0; padding-left: 0.6em; border-left: 5px solid #bbb; }
div.verdict p.yes { border-left-color: #2e8b3a; }
div.verdict p.no { border-left-color: #c77700; }
@media print {
  body { max-width: none; margin: 0; font-size: 10pt; }
  figure { break-inside: avoid; page-break-inside: avoid; }
  h2 { break-after: avoid; page-break-after: avoid; }
  table { break-inside: avoid; }
}
"""
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Figure:
    """An image of the report.

    Attributes
    ----------
    file : str
        Path relative to the report's folder, e.g. ``"report/top_images.png"``.
    title : str
        Short name, also the image's alt text.
    caption : str
        What the figure shows (plain text).
    """

    file: str
    title: str
    caption: str = ""


def _check_relative(file: str) -> None:
    """Raise ValueError unless ``file`` is a relative path inside the report's folder."""
    parts = PurePosixPath(file.replace("\\", "/")).parts
    if (not file or PurePosixPath(file).is_absolute() or PureWindowsPath(file).is_absolute()
            or PureWindowsPath(file).drive or "://" in file or ".." in parts):
        raise ValueError(f"figure file must be a relative path inside the report's folder "
                         f"(no absolute path, URL or '..'), got {file!r}")


def _format_cell(value: Any, column: str) -> tuple[str, bool]:
    """The text of one table cell and whether it is a number (right-aligned)."""
    if value is None:
        return DASH, False
    if isinstance(value, (str, bool)):
        return str(value), False
    if isinstance(value, numbers.Integral):
        return str(int(value)), True
    if isinstance(value, numbers.Real):
        v = float(value)
        return (f"{v:.1%}" if "accuracy" in column.lower() else f"{v:.4g}"), True
    raise TypeError(f"table cells must be str, int, float or None, got {type(value).__name__} "
                    f"in column {column!r}")


def _table_html(table: Mapping[str, Any]) -> str:
    """The results table as HTML; rows whose first cell contains "(oracle)" get class oracle."""
    missing = {"columns", "rows"} - set(table)
    if missing:
        raise ValueError(f"table needs keys 'columns' and 'rows' (and optionally 'caption'), "
                         f"missing {sorted(missing)}")
    columns = [str(c) for c in table["columns"]]
    lines = ['<table class="results">']
    if table.get("caption"):
        lines.append(f"<caption>{html.escape(str(table['caption']))}</caption>")
    lines.append("<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr></thead>")
    lines.append("<tbody>")
    for i, row in enumerate(table["rows"]):
        if len(row) != len(columns):
            raise ValueError(f"table row {i} must have {len(columns)} cells (one per column), got {len(row)}")
        oracle = bool(row) and isinstance(row[0], str) and ORACLE in row[0]
        cells = []
        for value, column in zip(row, columns):
            text, numeric = _format_cell(value, column)
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        lines.append(('<tr class="oracle">' if oracle else "<tr>") + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _figure_html(figure: Figure, folder: Path) -> str:
    """The figure with its image embedded as a data URI (and its file named in data-file)."""
    mime = MIME.get(Path(figure.file).suffix.lower(), "application/octet-stream")
    data = base64.b64encode((folder / figure.file).read_bytes()).decode("ascii")
    name = html.escape(quote(figure.file.replace("\\", "/")))
    title = html.escape(figure.title)
    caption = f"<strong>{title}</strong>" + (f": {html.escape(figure.caption)}" if figure.caption else "")
    return (f'<figure><img src="data:{mime};base64,{data}" data-file="{name}" alt="{title}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _verdict_html(verdict: Sequence[tuple[str, bool | None]]) -> list[str]:
    """The verdict box: one paragraph per finding, marked green (True) or amber (False)."""
    if not verdict:
        return []
    marks = {True: ' class="yes"', False: ' class="no"', None: ""}
    return ['<div class="verdict">'] + [f"<p{marks[ok]}>{html.escape(text)}</p>" for text, ok in verdict] + ["</div>"]


def write_report(path: str | Path, title: str, summary: Sequence[tuple[str, str]],
                 table: Mapping[str, Any], figures: Sequence[Figure], notes: Sequence[str] = (),
                 verdict: Sequence[tuple[str, bool | None]] = ()) -> Path:
    """Write the report page to ``path`` (atomically: a temporary file, then os.replace).

    Parameters
    ----------
    path : str or Path
        The .html file to write; the figures' files are relative to its folder.
    title : str
        Page title and heading.
    summary : sequence of (str, str)
        Key-value pairs shown at the top (run dir, checkpoint step, layer, ...).
    table : mapping
        ``{"columns": [str, ...], "rows": [[cell, ...], ...], "caption": str}``; cells are
        str, int, float or None. Floats are shown as percentages (``82.2%``) in columns whose
        name contains "accuracy", else with 4 significant digits; None as a dash. A row whose
        first cell contains "(oracle)" is shown in grey italics (for reference only).
    figures : sequence of Figure
        Shown in order, after the table and the protocol.
    notes : sequence of str
        Paragraphs of the "Protocol" section (plain text).
    verdict : sequence of (str, bool or None)
        The findings shown first, under the title, in plain words: each sentence with True
        (found: marked green), False (not found: amber) or None (unmarked).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        A figure's file is absolute, a URL or goes up with ".."; the table is malformed.
    FileNotFoundError
        Some figures' files do not exist (all are named); nothing is written.
    """
    path = Path(path)
    for figure in figures:
        _check_relative(figure.file)
    missing = [f.file for f in figures if not (path.parent / f.file).is_file()]
    if missing:
        raise FileNotFoundError(f"report figures not found beside {path}: {', '.join(missing)}")
    results = _table_html(table)

    body = [f"<h1>{html.escape(title)}</h1>", *_verdict_html(verdict), '<table class="summary">']
    body += [f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary]
    body += ["</table>", "<h2>Results</h2>", results]
    if notes:
        body.append("<h2>Protocol</h2>")
        body += [f"<p>{html.escape(str(note))}</p>" for note in notes]
    if figures:
        body.append("<h2>Figures</h2>")
        body += [_figure_html(f, path.parent) for f in figures]
    stamp = datetime.now().isoformat(timespec="minutes")
    body.append(f"<footer>Generated by cots-hpc on {html.escape(stamp)}.</footer>")
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
        *body, "</body>", "</html>", ""])

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder, so os.replace is atomic
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def referenced_files(html_path: str | Path) -> list[Path]:
    """The absolute paths of the files beside an existing report that its embedded images
    were drawn to (their ``data-file``), in order of appearance."""
    html_path = Path(html_path)
    text = html_path.read_text(encoding="utf-8")
    folder = html_path.parent.resolve()
    return [folder / unquote(html.unescape(name)) for name in re.findall(r'data-file="([^"]*)"', text)]


def embedded_images(html_path: str | Path) -> list[bytes]:
    """The decoded bytes of every image an existing report embeds, in order of appearance."""
    text = Path(html_path).read_text(encoding="utf-8")
    return [base64.b64decode(data) for data in re.findall(r'src="data:[^;"]+;base64,([^"]*)"', text)]
