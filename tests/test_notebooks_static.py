"""The notebooks read anywhere: jupytext pairs in sync, and every figure drawn in the static HTML export.

* ``test_pair_in_sync`` (fast, no browser): each ``notebooks/NN_name.py`` (jupytext percent format) and its
  ``.ipynb`` hold the same cells: types, sources and tags. The fix when it fails: ``jupytext --sync``.
* ``test_gallery_*`` (fast, no browser): ``asru_lens.show.gallery.build`` on a small notebook and report.
* ``test_static_page`` (``browser``): each committed notebook exported by ``gallery.build`` is opened in headless
  Chromium with every non-``file:`` request aborted (no network, no kernel, no widget manager from a CDN). Every
  figure output (a plotly bundle or an image) must show as a drawn ``<img>`` (``naturalWidth > 0``), every
  Markdown image too, and notebook 02's widget must have its static fallback image right under it. Notebook 01's
  page is saved as ``figures/notebook_01.png`` (full page) for the README.

Notebooks are found by glob, so a new ``notebooks/NN_name.{py,ipynb}`` pair is checked with no change here.
Chromium is Debian's (/usr/bin/chromium), driven by Playwright's Python package, as in test_browser.py.
"""
import difflib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SCRIPTS = sorted(NOTEBOOK_DIR.glob("*.py"))
PAIRS = sorted({p.stem for p in NOTEBOOKS} | {p.stem for p in SCRIPTS})
SCREENSHOT = Path(os.environ.get("ASRU_LENS_FIGURES") or ROOT / "figures") / "notebook_01.png"  # conftest: temp
PLOTLY = "application/vnd.plotly.v1+json"
WIDGET = "application/vnd.jupyter.widget-view+json"
IMAGES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
PROGRESS = re.compile(r"\|\s*\d+/\d+\s*\[")          # a tqdm bar's text: "|      | 0/150 [00:00<?, ?it/s]"
MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)[^)]*\)|<img\b[^>]*\bsrc=[\"']([^\"']+)", re.IGNORECASE)


# --- jupytext pairs -------------------------------------------------------------------------------------------

def _cells(path: Path) -> list[tuple[str, str, list]]:
    try:
        import jupytext
    except ImportError:                 # not a skip: an unchecked pair is what this test exists to catch
        pytest.fail("jupytext is needed to check the notebook pairs: pip install -e '.[dev]' (or pip install jupytext)")
    nb = jupytext.read(path)
    return [(c.cell_type, c.source.rstrip("\n"), list(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("stem", PAIRS)
def test_pair_in_sync(stem):
    py, ipynb = NOTEBOOK_DIR / f"{stem}.py", NOTEBOOK_DIR / f"{stem}.ipynb"
    fix = f"run `jupytext --sync notebooks/{stem}.py` (the newer file of the pair wins)"
    assert py.exists() and ipynb.exists(), (
        f"notebooks/{stem}: only {(py if py.exists() else ipynb).name} exists; every notebook is a jupytext pair "
        f"(percent .py + .ipynb): run `jupytext --set-formats ipynb,py:percent notebooks/{stem}.*` on the one there")
    formats = json.loads(ipynb.read_text()).get("metadata", {}).get("jupytext", {}).get("formats", "")
    assert "py:percent" in formats and "ipynb" in formats, (
        f"{ipynb.name} is not paired (metadata.jupytext.formats = {formats!r}); run "
        f"`jupytext --set-formats ipynb,py:percent notebooks/{stem}.ipynb`")
    a, b = _cells(py), _cells(ipynb)
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            if x[1] != y[1]:
                diff = difflib.unified_diff(y[1].splitlines(), x[1].splitlines(), f"{stem}.ipynb", f"{stem}.py",
                                            lineterm="", n=1)
                what = "source:\n" + "\n".join(list(diff)[:30])
            else:
                what = f"type or tags: .py {x[0]} {x[2]}, .ipynb {y[0]} {y[2]}"
            pytest.fail(f"notebooks/{stem}.py and .ipynb are out of sync at cell {i}, {what}\n{fix}")
    assert len(a) == len(b), (f"notebooks/{stem}.py has {len(a)} cells, the .ipynb {len(b)}: "
                              f"the pair is out of sync; {fix}")


# --- the gallery, without a browser ---------------------------------------------------------------------------

PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def _tiny_project(root: Path) -> None:
    import base64

    import nbformat
    (root / "figures").mkdir(parents=True)
    (root / "figures" / "dot.png").write_bytes(base64.b64decode(PNG_1PX))
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 01 · A tiny notebook\n\n![a dot](../figures/dot.png) "
                                      "and [the next one](02_b.ipynb)"),
        nbformat.v4.new_code_cell("fig", outputs=[nbformat.v4.new_output(
            "display_data", data={PLOTLY: {"data": [], "layout": {}}, "image/png": PNG_1PX})])])
    (root / "notebooks").mkdir()
    nbformat.write(nb, root / "notebooks" / "01_a.ipynb")
    bare = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 02 · Bare"), nbformat.v4.new_code_cell(
        "fig", outputs=[nbformat.v4.new_output("display_data", data={PLOTLY: {"data": [], "layout": {}}})])])
    nbformat.write(bare, root / "notebooks" / "02_b.ipynb")
    (root / "reports").mkdir()
    (root / "reports" / "report.md").write_text(
        "# A run\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![dot](../figures/dot.png)\n\n"
        "[notebook 01](../notebooks/01_a.ipynb)\n")


def test_gallery_pages(tmp_path, capsys):
    from asru_lens.show import gallery
    _tiny_project(tmp_path)
    out = tmp_path / "site"
    pages = gallery.build(out, tmp_path / "notebooks", tmp_path / "reports" / "report.md")
    assert [p.name for p in pages] == ["index.html", "01_a.html", "02_b.html", "report.html"]
    assert all(p.is_file() for p in pages)
    index = (out / "index.html").read_text()
    assert all(f'href="{p.name}"' in index for p in pages[1:])
    one, report = (out / "01_a.html").read_text(), (out / "report.html").read_text()
    assert "../figures/dot.png" not in one and "../figures/dot.png" not in report     # inlined
    assert one.count(f"data:image/png;base64,{PNG_1PX}") == 2 and PLOTLY not in one   # output + markdown image
    assert 'href="02_b.html"' in one and 'href="01_a.html"' in report and "<table" in report
    err = capsys.readouterr().err
    assert "02_b.ipynb: 1 figure(s) hold only the plotly JSON" in err
    # rebuilt in place, without the report: replaced whole, with a note
    pages = gallery.build(out, tmp_path / "notebooks", tmp_path / "reports" / "missing.md")
    assert [p.name for p in pages] == ["index.html", "01_a.html", "02_b.html"]
    assert not (out / "report.html").exists() and "no " in capsys.readouterr().err


def test_gallery_refuses_a_foreign_folder(tmp_path):
    from asru_lens.show import gallery
    _tiny_project(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("not a gallery")
    with pytest.raises(FileExistsError):
        gallery.build(tmp_path / "mine", tmp_path / "notebooks", None)
    assert (tmp_path / "mine" / "keep.txt").read_text() == "not a gallery"


# --- the committed notebooks in headless Chromium, offline ----------------------------------------------------

def _figure_cells(nb: dict) -> dict[str, int]:
    """cell id -> how many figure outputs (a plotly bundle or an image) the cell holds."""
    out = {}
    for cell in nb["cells"]:
        n = sum(1 for o in cell.get("outputs", []) if PLOTLY in o.get("data", {})
                or any(k in o.get("data", {}) for k in IMAGES))
        if cell["cell_type"] == "code" and n:
            assert cell.get("id"), "a figure cell has no id (nbformat >= 4.5 gives every cell one)"
            out[cell["id"]] = n
    return out


def _markdown_images(nb: dict) -> dict[str, int]:
    """cell id -> how many images a markdown cell shows."""
    out = {}
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        n = len(MARKDOWN_IMAGE.findall(src))
        if cell["cell_type"] == "markdown" and n:
            out[cell["id"]] = n
    return out


def _widget_fallbacks(nb: dict) -> list[str]:
    """For each cell that shows a widget with saved state (tqdm's progress bars aside), the id of the markdown
    cell right under it (its static fallback), or a placeholder when the next cell is not markdown."""
    if not nb.get("metadata", {}).get("widgets"):
        return []
    cells, out = nb["cells"], []
    for i, cell in enumerate(cells):
        shows = [o for o in cell.get("outputs", []) if WIDGET in o.get("data", {})
                 and not PROGRESS.search("".join(o["data"].get("text/plain", "")))]
        if shows:
            nxt = cells[i + 1] if i + 1 < len(cells) else None
            out.append(nxt["id"] if nxt and nxt["cell_type"] == "markdown" else f"(no markdown under {cell['id']})")
    return out


# every <img> in a cell: [naturalWidth, complete, src prefix], after decoding
JS_IMAGES = """async id => { const cell = document.getElementById('cell-id=' + id);
  if (!cell) return null;
  const imgs = Array.from(cell.querySelectorAll('img'));
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return imgs.map(i => [i.naturalWidth, i.complete, (i.getAttribute('src') || '').slice(0, 30)]); }"""


@pytest.fixture(scope="module")
def gallery_site(tmp_path_factory):
    from asru_lens.show import gallery
    base = tmp_path_factory.mktemp("gallery")
    report = base / "run" / "report.md"          # a report as `asru-lens run` writes one: text, a table, a figure
    (report.parent / "figures").mkdir(parents=True)
    shutil.copy(ROOT / "figures" / "probe_auroc.png", report.parent / "figures" / "run_probe.png")
    report.write_text("# asru-lens run\n\n| method | leakage |\n|---|---|\n| vanilla | 0.000 |\n\n"
                      "![probe](figures/run_probe.png)\n")
    gallery.build(base / "site", NOTEBOOK_DIR, report)
    return base / "site"


def _open_offline(browser, page_path: Path):
    """A page with every request that is not a local file aborted; returns (context, page, blocked urls)."""
    context = browser.new_context(viewport={"width": 1100, "height": 900}, device_scale_factor=1,
                                  offline=True)
    blocked = []

    def route(r):
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()
    context.route("**/*", route)
    page = context.new_page()
    page.goto(page_path.as_uri(), wait_until="load", timeout=60_000)
    return context, page, blocked


def _palette(png: bytes) -> bytes:
    """A 256-colour PNG (about a third of the size, no visible change on a notebook page), when Pillow is there."""
    try:
        import io

        from PIL import Image
        buf = io.BytesIO()
        Image.open(io.BytesIO(png)).convert("RGB").quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buf, "PNG", optimize=True)
        return buf.getvalue() if buf.tell() < len(png) else png
    except ImportError:
        return png


@pytest.mark.browser
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_static_page(notebook, gallery_site, browser):
    nb = json.loads(notebook.read_text())
    figures, markdown, fallbacks = _figure_cells(nb), _markdown_images(nb), _widget_fallbacks(nb)
    page_path = gallery_site / f"{notebook.stem}.html"
    assert page_path.is_file(), f"gallery.build wrote no {page_path.name}"
    context, page, blocked = _open_offline(browser, page_path)
    try:
        problems = []
        for kind, cells in (("figure output", figures), ("markdown image", markdown)):
            for cell_id, expected in cells.items():
                imgs = page.evaluate(JS_IMAGES, cell_id)
                if imgs is None:
                    problems.append(f"cell {cell_id}: not in the page")
                    continue
                drawn = [i for i in imgs if i[0] > 0 and i[1]]
                if len(drawn) < expected:
                    bare = sum(1 for c in nb["cells"] if c.get("id") == cell_id for o in c.get("outputs", [])
                               if PLOTLY in o.get("data", {}) and not any(k in o["data"] for k in IMAGES))
                    hint = (f"; {bare} output(s) hold only the plotly JSON: re-execute the notebook "
                            f"(viz.setup_notebook() stores a PNG beside it when a Chromium exists)") if bare else ""
                    problems.append(f"cell {cell_id}: {len(drawn)} of {expected} {kind}(s) drawn {imgs}{hint}")
        n_fig = sum(figures.values())
        print(f"\n{notebook.name}: {n_fig} figure output(s) in {len(figures)} cell(s), "
              f"{sum(markdown.values())} markdown image(s); {len(blocked)} network request(s) blocked")
        if notebook.name.startswith("02_"):
            assert fallbacks and fallbacks[0] in markdown, (
                f"{notebook.name}: the widget cell needs its static fallback right under it, a markdown cell "
                f"with ![...](../figures/widget.png) (found {fallbacks})")
        for cell_id in fallbacks:
            assert cell_id in markdown, f"{notebook.name}: no static image right under the widget cell"
        assert not problems, f"{notebook.name}, exported offline:\n  " + "\n  ".join(problems)
        if notebook.name.startswith("01_"):
            from asru_lens.core.atomic import atomic_write_bytes
            shot = _palette(page.screenshot(full_page=True, animations="disabled", caret="hide"))
            atomic_write_bytes(SCREENSHOT, shot)
            print(f"saved {SCREENSHOT} ({len(shot) // 1024} KiB)")
    finally:
        context.close()


@pytest.mark.browser
def test_static_report(gallery_site, browser):
    page_path = gallery_site / "report.html"
    context, page, _ = _open_offline(browser, page_path)
    try:
        imgs = page.evaluate("""async () => { const imgs = Array.from(document.querySelectorAll('img'));
          await Promise.all(imgs.map(i => i.decode().catch(() => null)));
          return imgs.map(i => [i.naturalWidth, (i.getAttribute('src') || '').slice(0, 40)]); }""")
        assert len(imgs) == 1 and imgs[0][0] > 0, imgs          # the report's figure, decoded offline
    finally:
        context.close()
