"""A static HTML gallery: every notebook and the run report as pages that work offline, with no kernel.

``build(out="site")`` exports each ``notebooks/*.ipynb`` with nbconvert's HTML exporter (the JupyterLab look)
and the newest run report (``runs/<date>-seed<seed>/report.md``) the same way, then writes ``index.html`` linking them all. Each page stands alone:

* figure outputs are drawn from the static ``image/png`` that ``viz.setup_notebook()`` stores beside the plotly
  JSON (nbconvert prefers the PNG and drops the JSON, so no plotly.js is needed or embedded);
* every ``<img>`` with a local source, markdown images included (``../figures/widget.png``, the report's
  ``figures/run_tradeoff.png``), is inlined as a ``data:`` URI, resolved from the page's own folder;
* links to another exported notebook (``03_unlearning.ipynb``) or to the report point at its page.

A saved widget state (notebook 02) is kept: with a network the page draws the panel by loading a widget manager
from unpkg, without one the Markdown image under the widget cell shows it. The CDN scripts nbconvert's template
adds (require.js, MathJax) are only used when there is a network; no figure depends on them.

``out`` is replaced whole, atomically; a folder that exists, is not empty and was not written by ``build`` is
refused rather than overwritten.
"""
from __future__ import annotations

import base64
import html
import mimetypes
import re
import sys
import warnings
from pathlib import Path
from typing import Iterable

from asru_lens.core.atomic import atomic_dir

PLOTLY = "application/vnd.plotly.v1+json"
MARKER = ".asru-lens-gallery"          # marks a folder ``build`` wrote, so that it may replace it
_IMG_SRC = re.compile(r"""(<img\b[^>]*?\bsrc=)(["'])([^"']+)\2""", re.IGNORECASE)
_HREF = re.compile(r"""(\bhref=)(["'])([^"']+)\2""", re.IGNORECASE)
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.IGNORECASE)     # http:, data:, mailto:, //host, #anchor


def _title(nb, default: str) -> str:
    """The first Markdown heading of the notebook, without its leading #s."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip() or default
    return default


def _inline_images(page: str, folder: Path, missing: list[str]) -> str:
    """Replace every local ``<img src>`` (relative to ``folder``) with a data URI; note the ones not found."""
    def sub(m: re.Match) -> str:
        src = html.unescape(m.group(3))
        if _REMOTE.match(src):
            return m.group(0)
        path = (folder / src.split("#")[0].split("?")[0]).resolve()
        mime = mimetypes.guess_type(path.name)[0] or ""
        if not (mime.startswith("image/") and path.is_file()):
            missing.append(src)
            return m.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"{m.group(1)}{m.group(2)}data:{mime};base64,{data}{m.group(2)}"
    return _IMG_SRC.sub(sub, page)


def _relink(page: str, folder: Path, pages: dict[Path, str]) -> str:
    """Point links to an exported notebook or to the report (relative to ``folder``) at their pages."""
    def sub(m: re.Match) -> str:
        href = html.unescape(m.group(3))
        if _REMOTE.match(href):
            return m.group(0)
        target, _, anchor = href.partition("#")
        page_name = pages.get((folder / target).resolve())
        if page_name is None:
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{html.escape(page_name + ('#' + anchor if anchor else ''))}{m.group(2)}"
    return _HREF.sub(sub, page)


def _index(entries: list[tuple[str, str, str]]) -> str:
    """A self-contained index page: one line per (page, title, source file)."""
    items = "\n".join(f'<li><a href="{html.escape(page)}">{html.escape(title)}</a> '
                      f'<span class="src">{html.escape(src)}</span></li>' for page, title, src in entries)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>asru_lens gallery</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 52rem; margin: 3rem auto;
       padding: 0 1rem; line-height: 1.5; color: #222; }}
h1 {{ font-weight: 600; }}
li {{ margin: 0.4rem 0; }}
.src {{ color: #777; font-family: ui-monospace, monospace; font-size: 0.85em; margin-left: 0.5em; }}
</style>
</head>
<body>
<h1>asru_lens gallery</h1>
<p>The narrative notebooks and the run report as static pages, figures included: they need no kernel and
no network.</p>
<ul>
{items}
</ul>
</body>
</html>
"""


def figures_without_image(nb) -> int:
    """How many plotly outputs of ``nb`` carry no static image (the HTML export cannot draw them)."""
    return sum(1 for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
               if PLOTLY in o.get("data", {}) and not {"image/png", "image/svg+xml", "image/jpeg"} & set(o["data"]))


def _notebook_paths(notebooks: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(notebooks, (str, Path)):
        folder = Path(notebooks)
        if not folder.is_dir():
            raise FileNotFoundError(f"no notebook folder {folder}")
        return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    return [Path(p) for p in notebooks]


def newest_report(runs: str | Path = "runs") -> Path | None:
    """The newest ``runs/*/report.md`` that ``asru-lens run`` wrote, or None."""
    found = sorted(Path(runs).glob("*/report.md"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def build(out: str | Path = "site", notebooks: str | Path | Iterable[str | Path] = "notebooks",
          report: str | Path | None = "newest") -> list[Path]:
    """Export every notebook (a folder's ``*.ipynb``, or a list of paths) and ``report`` (``"newest"``: the
    newest ``runs/*/report.md``; skipped with a note when it does not exist, or when None) to static HTML under ``out``, plus ``out/index.html``.

    Returns the pages written, the index first. ``out`` is replaced whole and atomically."""
    import nbformat  # the docs extra: only the gallery renders notebooks
    from nbconvert import HTMLExporter

    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise FileExistsError(f"{out} exists and was not written by asru_lens.show.gallery.build; "
                              f"choose an empty or new folder")
    sources = _notebook_paths(notebooks)
    if report == "newest":
        report = newest_report()
        if report is None:
            print("gallery: no runs/*/report.md (write one with `asru-lens run`); the gallery has the notebooks "
                  "only", file=sys.stderr)
    report = Path(report) if report is not None else None
    if report is not None and not report.is_file():
        print(f"gallery: no {report} (write it with `asru-lens run`); the gallery has the notebooks only",
              file=sys.stderr)
        report = None

    # every page, by the resolved path of its source, so links between them can be rewritten
    pages = {p.resolve(): f"{p.stem}.html" for p in sources}
    if report is not None:
        pages[report.resolve()] = "report.html"

    exporter = HTMLExporter(embed_images=True)          # template "lab"; attachments and images inlined
    entries, missing = [], {}
    with atomic_dir(out) as tmp:
        (tmp / MARKER).write_text("written by asru_lens.show.gallery.build; replaced whole on the next build\n")
        docs = [(p, nbformat.read(p, as_version=4)) for p in sources]
        if report is not None:
            docs.append((report, nbformat.v4.new_notebook(
                cells=[nbformat.v4.new_markdown_cell(report.read_text(encoding="utf-8"))])))
        for src, nb in docs:
            name = pages[src.resolve()]
            title = _title(nb, src.stem)
            bare = figures_without_image(nb)
            if bare:
                print(f"gallery: {src}: {bare} figure(s) hold only the plotly JSON, which a static page cannot "
                      f"draw; re-run the notebook (viz.setup_notebook() with a Chromium) to store their PNGs",
                      file=sys.stderr)
            with warnings.catch_warnings():      # nbconvert's "not able to be represented": said just above
                warnings.filterwarnings("ignore", message="Your element with mimetype", category=UserWarning)
                body, _ = exporter.from_notebook_node(
                    nb, resources={"metadata": {"name": title, "path": str(src.parent)}})
            lost: list[str] = []
            body = _relink(_inline_images(body, src.parent, lost), src.parent, pages)
            if lost:
                missing[src] = lost
            (tmp / name).write_text(body, encoding="utf-8")
            entries.append((name, title, str(src)))
        (tmp / "index.html").write_text(_index(entries), encoding="utf-8")
    for src, lost in missing.items():
        print(f"gallery: {src}: image(s) not found, left as links: {', '.join(sorted(set(lost)))}",
              file=sys.stderr)
    return [out / "index.html"] + [out / name for name, _, _ in entries]
