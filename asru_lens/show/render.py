"""Figures to files and to notebooks: ``save`` writes a figure as HTML and, when kaleido finds a Chromium, as PNG;
``setup_notebook`` makes notebook outputs carry a static PNG beside plotly's interactive bundle.
"""
from __future__ import annotations

import base64
import io
import os
import shutil
import sys
import threading
import time
import warnings
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from PIL import Image
from plotly.io._base_renderers import MimetypeRenderer as _MimetypeRenderer
from plotly.offline import get_plotlyjs

from asru_lens.core.atomic import atomic_write_bytes, atomic_write_text


def chromium() -> str | None:
    """A Chrome/Chromium kaleido can use, or None."""
    for c in (os.environ.get("BROWSER_PATH"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("google-chrome"), shutil.which("chromium-browser")):
        if c and os.path.exists(c):
            return c
    return None


def save(fig: go.Figure, name: str, folder: str | os.PathLike = "figures", png: bool | None = None) -> list[Path]:
    """Write ``folder/name.html`` (plotly.js shared as ``folder/plotly.min.js``) and, when a Chromium is
    available (or ``png=True``), ``folder/name.png``. Returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    html = folder / f"{name}.html"
    # a fixed div id: the same figure writes the same file, so re-running a notebook leaves git clean
    atomic_write_text(html, fig.to_html(include_plotlyjs="directory", full_html=True, div_id=name))
    js = folder / "plotly.min.js"
    if not js.exists():
        atomic_write_text(js, get_plotlyjs())
    out = [html]
    browser = chromium()
    if png or (png is None and browser):
        if browser:
            os.environ.setdefault("BROWSER_PATH", browser)
            _kaleido_server_once()      # one Chromium for the process: a run's dozen PNGs take seconds, not a minute
        image = _png(fig, strict=bool(png))
        if image is not None:
            atomic_write_bytes(folder / f"{name}.png", image)
            out.append(folder / f"{name}.png")
    return out


def _png(fig: go.Figure, strict: bool, tries: int = 3) -> bytes | None:
    """``fig`` as a 1000 x 520 PNG through kaleido. kaleido 1.x sometimes loses a race with its own page on a
    loaded machine (``ReferenceError: kaleido_scopes is not defined``), so a failure is retried; after ``tries``
    it raises when the PNG was asked for (``strict``) and otherwise warns on stderr and returns None, so that a
    command never loses its result, or its HTML figure, for want of a picture."""
    for attempt in range(tries):
        try:
            return fig.to_image(format="png", width=1000, height=520, scale=1)
        except Exception as e:                          # noqa: BLE001 (kaleido raises its own JavaScript errors)
            if attempt == tries - 1:
                if strict:
                    raise
                print(f"viz: no PNG for this figure after {tries} tries ({type(e).__name__}: "
                      f"{str(e).splitlines()[0][:120]}); its HTML is written", file=sys.stderr)
                return None
            time.sleep(1.0 + attempt)


class _StaticPng(_MimetypeRenderer):
    """A plotly mime renderer that adds a static ``image/png`` (kaleido, through a local Chromium) beside the
    plotly JSON bundle, at ``width`` x ``height`` layout pixels (a figure's own layout size wins), scale 1 and 256
    colours, so GitHub, nbviewer and nbconvert's HTML draw the figure while JupyterLab still draws the interactive
    one. A figure kaleido cannot render keeps its JSON only, with a one-line note on stderr."""

    def __init__(self, width: int = 1000, height: int = 520, scale: float = 1):
        self.width, self.height, self.scale = width, height, scale

    def activate(self) -> None:
        pass

    def to_mimebundle(self, fig_dict: dict) -> dict:
        layout = fig_dict.get("layout", {})
        try:
            with warnings.catch_warnings():             # plotly's kopts, which kaleido's sync server ignores
                warnings.filterwarnings("ignore", message="The kopts argument is ignored", category=UserWarning)
                png = pio.to_image(fig_dict, format="png", width=layout.get("width") or self.width,
                                   height=layout.get("height") or self.height, scale=self.scale, validate=False)
        except Exception as e:                          # never lose the figure for want of its picture
            print(f"viz: no static PNG for this figure ({type(e).__name__}: {str(e).splitlines()[0][:120]})",
                  file=sys.stderr)
            return {}
        return {"image/png": base64.b64encode(_palette_png(png)).decode("ascii")}


def _palette_png(png: bytes) -> bytes:
    """``png`` as a 256-colour palette PNG over white (plotly's flat colours survive; about 4x smaller, so the
    .ipynb stays small), or unchanged when Pillow cannot, or when that is not smaller."""
    try:
        im = Image.open(io.BytesIO(png))
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im)
        im = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        buf = io.BytesIO()
        im.save(buf, "PNG", optimize=True)
        return buf.getvalue() if buf.tell() < len(png) else png
    except Exception:
        return png


def _kaleido_server(timeout: float = 120) -> bool:
    """Start kaleido's sync server, one Chromium kept for the kernel's life (closed at exit; it also dies with a
    killed kernel), so that a figure's PNG takes ~0.2 s instead of ~4 s for a Chromium of its own, ``save``'s
    included. It is checked on a blank figure first: a server whose Chromium fails to start would make every later
    export wait forever, so then it is switched off again and each export starts its own Chromium (and fails
    with an error, not a hang). True when the server runs."""
    try:
        import kaleido                              # inside the try: an older kaleido has no server
        server = kaleido._global_server
        if server.is_running():
            return True
        kaleido.start_sync_server(silence_warnings=True)
    except Exception:                                   # an older kaleido: a Chromium per figure
        return False
    # plotly always passes kopts (its headers), which the server ignores, with a warning per first call site
    warnings.filterwarnings("ignore", message="The kopts argument is ignored if using a server", category=UserWarning)
    done: list = []

    def check():
        try:
            done.append(kaleido.calc_fig_sync({"data": [], "layout": {}}, opts=dict(format="png", width=20,
                                                                                     height=20)))
        except BaseException as e:                      # noqa: BLE001 (reported by the caller)
            done.append(e)
    worker = threading.Thread(target=check, daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout
    while worker.is_alive() and time.monotonic() < deadline:
        worker.join(0.2)
        thread = getattr(server, "_thread", None)
        if thread is not None and not thread.is_alive():  # its Chromium failed: the check would wait forever
            break
    if done and isinstance(done[0], bytes):
        return True
    server._initialized = False                         # dead or stuck: sync exports go back to one-shot
    return False


_SERVER: list[bool] = []


def _kaleido_server_once() -> bool:
    """``_kaleido_server`` tried once per process: a server that did not start is not waited for again."""
    if not _SERVER:
        _SERVER.append(_kaleido_server())
    return _SERVER[0]


def setup_notebook(static: bool | None = None) -> None:
    """Figures as plotly's JSON mime bundle (JupyterLab draws them interactively, with no plotly.js embedded in the
    .ipynb) plus, when a Chromium is available (``static=None``) or ``static=True``, a static 1000 x 520 PNG beside
    it for renderers that cannot run plotly (GitHub, nbviewer, the HTML export); no Chromium: the JSON only, with a
    one-line note. With static PNGs, one Chromium serves every export of the session (``_kaleido_server_once``). Also
    turns off weight-loading progress bars in cell outputs."""
    from transformers.utils import logging      # transformers loads only when a notebook sets up

    browser = chromium()
    if static is None:
        static = browser is not None
        if not static:
            print("viz: no Chromium found (BROWSER_PATH, /usr/bin/chromium, chromium on PATH): figures carry the "
                  "interactive plotly bundle only, with no static PNG", file=sys.stderr)
    if static:
        if browser:
            os.environ.setdefault("BROWSER_PATH", browser)
        if not _kaleido_server_once():
            print("viz: kaleido's Chromium server did not start; each figure starts a Chromium of its own",
                  file=sys.stderr)
        pio.renderers["asru_png"] = _StaticPng()
        pio.renderers.default = "plotly_mimetype+asru_png"
    else:
        pio.renderers.default = "plotly_mimetype"
    logging.disable_progress_bar()
