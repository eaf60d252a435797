"""The steering widget in a real browser: JupyterLab + headless Chromium run notebook 02 and move the slider.

The headless widget test (test_widgets.py) drives the Python side only; this one needs the JupyterLab frontend
and the ipywidgets lab extension to render the panel and send the slider's new value back to the kernel, so it
catches frontend-version problems ("Error displaying widget", a model that is never found). It runs a copy of
notebook 02 in a temp folder (the committed notebook and the repo's figures stay untouched), with every Jupyter
config, data, runtime and settings folder in temp, on localhost only, and saves figures/widget.png.

Chromium is Debian's (/usr/bin/chromium), driven by Playwright's Python package; the test is skipped without it.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from asru_lens.show.render import chromium

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "02_steering.ipynb"
FIGURE = Path(os.environ.get("ASRU_LENS_FIGURES") or ROOT / "figures") / "widget.png"   # conftest: temp
CHROMIUM = chromium()               # the one kaleido uses too; tests/conftest.py's browser fixture launches it
TOKEN = "asru-lens-browser-test"
WIDGET_TIMEOUT_S = 420          # load the organism, probe, sweep: ~1 min here, generous for a busy CI box
UPDATE_TIMEOUT_S = 60           # one slider move: one steered generation

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="needs a Chromium (/usr/bin/chromium, or chromium on PATH)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _descendants(pid: int) -> list:
    try:
        import psutil                               # ipykernel depends on it
        return psutil.Process(pid).children(recursive=True)
    except Exception:
        return []


class Lab:
    """A JupyterLab server on 127.0.0.1 with its own temp config; ``url(path)`` adds the token."""

    def __init__(self, tmp: Path):
        self.tmp, self.root, self.port = tmp, tmp / "root", _free_port()
        (self.root / "notebooks").mkdir(parents=True)
        shutil.copy(NOTEBOOK, self.root / "notebooks" / NOTEBOOK.name)    # its figure cell writes ../figures
        jupyter = {k: tmp / d for k, d in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                                           ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython"),
                                           ("JUPYTERLAB_SETTINGS_DIR", "lab-settings"),
                                           ("JUPYTERLAB_WORKSPACES_DIR", "lab-workspaces")]}
        for d in jupyter.values():
            d.mkdir(parents=True, exist_ok=True)
        # offline: no news feed, no update check; window.jupyterapp for the test to call commands
        _write_json(jupyter["JUPYTER_CONFIG_DIR"] / "jupyter_lab_config.json",
                    {"LabApp": {"news_url": None, "expose_app_in_browser": True,
                                "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                                "extension_manager": "readonly"}})
        settings = jupyter["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab"
        _write_json(settings / "apputils-extension" / "notification.jupyterlab-settings",
                    {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
        _write_json(settings / "notebook-extension" / "tracker.jupyterlab-settings",
                    {"windowingMode": "none", "recordTiming": True})           # every cell in the DOM, timed
        # The kernel's torch runs single-threaded unless OMP_NUM_THREADS says otherwise: this test is about the
        # frontend, and on a small box shared with other jobs, multi-threaded torch (spinning OpenMP threads)
        # runs the notebook's cells 10-20x slower.
        env = {**os.environ, **{k: str(v) for k, v in jupyter.items()}, "PYTHONUNBUFFERED": "1",
               "HF_HUB_OFFLINE": "1", "JUPYTER_PLATFORM_DIRS": "0",
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        self.log_path = tmp / "jupyterlab.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             "--port-retries=0", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={self.root}",
             "--ServerApp.terminals_enabled=False"] + (["--allow-root"] if os.geteuid() == 0 else []),
            cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{path}{sep}token={TOKEN}"

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url("/api/status"), timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"jupyter lab not ready after {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Shut the server and its kernels down (kernels run in their own sessions), then kill what is left."""
        children = _descendants(self.proc.pid)
        if self.proc.poll() is None:
            try:
                req = urllib.request.Request(self.url("/api/shutdown"), method="POST", data=b"")
                urllib.request.urlopen(req, timeout=10).close()
                self.proc.wait(timeout=20)
            except Exception:
                pass
        if self.proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                    self.proc.wait(timeout=10)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    if self.proc.poll() is not None:
                        break
        for child in children:                      # a kernel the shutdown missed
            try:
                child.kill()
            except Exception:
                pass
        self._log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = Lab(tmp_path_factory.mktemp("jupyterlab"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# JavaScript run in the page (JupyterLab exposes window.jupyterapp when expose_app_in_browser is set)
JS_READY = """() => { const app = window.jupyterapp; const nb = app && app.shell.currentWidget;
  const kernel = nb && nb.sessionContext && nb.sessionContext.session && nb.sessionContext.session.kernel;
  return !!(kernel && kernel.status === 'idle' && nb.content && nb.content.widgets.length); }"""
JS_RUN_ALL = """async () => { const app = window.jupyterapp; app.shell.collapseLeft(); app.shell.collapseRight();
  await app.commands.execute('notebook:clear-all-cell-outputs');
  window.__runAll = 'running';
  app.commands.execute('notebook:run-all-cells').then(
    ok => { window.__runAll = ok === false ? 'a cell failed' : 'done'; },
    err => { window.__runAll = 'error: ' + err; }); }"""
JS_TIMES = """() => window.jupyterapp.shell.currentWidget.content.widgets
  .filter(c => c.model.type === 'code').map(c => { const t = c.model.getMetadata('execution') || {};
    const a = Date.parse(t['iopub.execute_input']), b = Date.parse(t['shell.execute_reply']);
    return isNaN(a) || isNaN(b) ? null : Math.round((b - a) / 100) / 10; })"""
JS_ERRORS = """() => Array.from(document.querySelectorAll(
  '[data-mime-type="application/vnd.jupyter.stderr"], [data-mime-type="application/vnd.jupyter.error"]'))
  .map(e => e.innerText).join('\\n---\\n')"""


def _widget_or_fail(page, lab, timeout: float) -> None:
    """Wait until the panel is rendered; fail at once on a widget error, a failed cell or a dead server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.locator(".asru-steering .asru-steered").count() and page.locator(".asru-steered").is_visible():
            return
        if page.get_by_text("Error displaying widget").count():
            raise AssertionError("the frontend could not display the widget: "
                                 + page.get_by_text("Error displaying widget").first.inner_text())
        state = page.evaluate("() => window.__runAll")
        if state != "running":
            raise AssertionError(f"run all cells ended ({state}) with no widget rendered; "
                                 f"errors in the page:\n{page.evaluate(JS_ERRORS)}")
        if lab.proc.poll() is not None:
            raise AssertionError(f"jupyter lab died:\n{lab.log_tail()}")
        page.wait_for_timeout(1000)
    raise AssertionError(f"no widget after {timeout} s (run all: {page.evaluate('() => window.__runAll')}); "
                         f"errors in the page:\n{page.evaluate(JS_ERRORS)}")


def _drag_slider(page, fraction: float) -> str:
    """Drag the alpha handle with the mouse to ``fraction`` of the track; returns the slider's readout."""
    track = page.locator(".asru-alpha .noUi-target")
    handle = page.locator(".asru-alpha .noUi-handle")
    handle.scroll_into_view_if_needed()
    t, h = track.bounding_box(), handle.bounding_box()
    page.mouse.move(h["x"] + h["width"] / 2, h["y"] + h["height"] / 2)
    page.mouse.down()
    page.mouse.move(t["x"] + fraction * t["width"], h["y"] + h["height"] / 2, steps=12)
    page.mouse.up()
    return page.locator(".asru-alpha .widget-readout").inner_text()


def _wait_changed(page, before: str, timeout: float) -> str:
    page.wait_for_function("b => { const e = document.querySelector('.asru-steered');"
                           " return e && e.innerText.trim() && e.innerText !== b; }",
                           arg=before, timeout=timeout * 1000)
    return page.locator(".asru-steered").inner_text()


def test_widget_in_jupyterlab(lab, browser, tmp_path):
    t0 = time.monotonic()
    console = []
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    page = context.new_page()
    page.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
    page.on("pageerror", lambda e: console.append(f"[pageerror] {e}"))
    try:
        page.goto(lab.url("/lab/tree/notebooks/02_steering.ipynb"), wait_until="domcontentloaded", timeout=120_000)
        page.wait_for_function(JS_READY, timeout=180_000)                  # lab restored, kernel started, idle
        page.evaluate(JS_RUN_ALL)
        _widget_or_fail(page, lab, WIDGET_TIMEOUT_S)
        print(f"\nwidget rendered after {time.monotonic() - t0:.0f} s")
        page.wait_for_function("() => window.__runAll !== 'running'", timeout=WIDGET_TIMEOUT_S * 1000)
        print("cell times (s):", page.evaluate(JS_TIMES))
        assert page.evaluate("() => window.__runAll") == "done", page.evaluate(JS_ERRORS)

        plain = page.locator(".asru-plain").inner_text()
        first = page.locator(".asru-steered").inner_text()
        readout = page.locator(".asru-alpha .widget-readout").inner_text()
        assert plain.strip() and first.strip() and float(readout) == pytest.approx(1.0)
        assert first != plain, "at alpha 1 the notebook's first sample should already be steered"

        # alpha -> 0 with the mouse: the kernel recomputes and the steered text becomes the unsteered one
        readout = _drag_slider(page, -0.05)
        assert float(readout) == pytest.approx(0.0), readout
        at_zero = _wait_changed(page, first, UPDATE_TIMEOUT_S)
        assert at_zero == plain, (at_zero, plain)
        # and up again: the steering is back, the unsteered answer never moved
        readout = _drag_slider(page, 0.6)
        assert 1.5 <= float(readout) <= 2.1, readout
        steered = _wait_changed(page, at_zero, UPDATE_TIMEOUT_S)
        assert steered != plain and page.locator(".asru-plain").inner_text() == plain
        print(f"alpha 1.0: {first!r}\nalpha 0.0: {at_zero!r}\nalpha {readout}: {steered!r}")

        page.mouse.move(0, 0)
        page.add_style_tag(content=".jp-cell-toolbar { display: none !important; }")   # a cleaner figure
        cell = page.locator(".jp-CodeCell", has=page.locator(".asru-steering"))
        cell.scroll_into_view_if_needed()
        FIGURE.parent.mkdir(exist_ok=True)
        cell.screenshot(path=str(FIGURE), animations="disabled", caret="hide")
        print(f"saved {FIGURE}; {time.monotonic() - t0:.0f} s in the browser")
    except BaseException:
        shot = tmp_path / "failure.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
        except Exception:
            shot = "(could not take one)"
        print(f"\n--- browser test failed; screenshot: {shot}\n--- page console (last 60):\n"
              + "\n".join(console[-60:]) + f"\n--- jupyter lab log (tail):\n{lab.log_tail()}")
        raise
    finally:
        context.close()
