"""An ipywidgets panel to feel the steering trade-off live.

    from asru_lens.show.widgets import SteeringWidget
    w = SteeringWidget(lens, items, result.directions[:, result.selection.position], layer=2)
    w.widget                      # display it in a notebook cell

Controls: a sample picker (the portrait is shown), the question, the layer, the strength alpha and the mode.
The panel shows the unsteered and the steered answer side by side and, as small bars, the prompt's projection
on each layer's direction. Every control calls ``update``; a test drives it headlessly.
"""
from __future__ import annotations

import html
import io

import ipywidgets as W
import torch

from asru_lens.interpret import probe, steer
from asru_lens.core.data import QA


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.resize((128, 128)).save(buf, format="PNG")
    return buf.getvalue()


def projection_bars(values: list[float], chosen: int | None = None, width: int = 260, height: int = 90) -> str:
    """Inline SVG bars, one per layer (positive up, negative down); the steered layer is drawn darker."""
    top = max(1e-9, max(abs(v) for v in values))
    bar, mid = width / max(1, len(values)), height / 2
    parts = [f'<svg width="{width}" height="{height + 16}" xmlns="http://www.w3.org/2000/svg">',
             f'<line x1="0" y1="{mid}" x2="{width}" y2="{mid}" stroke="#999"/>']
    for i, v in enumerate(values):
        h = abs(v) / top * (mid - 4)
        y = mid - h if v >= 0 else mid
        colour = "#d62728" if i == chosen else "#1f77b4"
        parts.append(f'<rect x="{i * bar + 4:.1f}" y="{y:.1f}" width="{bar - 8:.1f}" height="{h:.1f}" '
                     f'fill="{colour}"><title>layer {i}: {v:.2f}</title></rect>')
        parts.append(f'<text x="{i * bar + bar / 2:.1f}" y="{height + 12}" font-size="10" '
                     f'text-anchor="middle">L{i}</text>')
    return "".join(parts) + "</svg>"


class SteeringWidget:
    """Sample picker, question, layer, alpha and mode; unsteered vs steered answers and projection bars."""

    def __init__(self, lens, items: list[QA], directions: torch.Tensor, layer: int = 0, alpha: float = 1.0,
                 mode: str = "add", max_new_tokens: int | None = None):
        if not items:
            raise ValueError("SteeringWidget needs at least one sample (a data.QA with a question and an image).")
        self.lens, self.items, self.directions = lens, items, directions.float()
        self.max_new_tokens = max_new_tokens
        self._plain_cache: dict = {}
        self.picker = W.Dropdown(options=[(f"{i}: {q.question[:40]}", i) for i, q in enumerate(items)],
                                 value=0, description="sample")
        self.portrait = W.Image(format="png", width=96, height=96)
        self.question = W.Text(value=items[0].question, description="question",
                               layout=W.Layout(width="420px"))
        self.layer = W.Dropdown(options=list(range(lens.n_layers)), value=steer.check_layer(lens, layer),
                                description="layer")
        self.alpha = W.FloatSlider(value=alpha, min=0.0, max=3.0, step=0.1, description="alpha",
                                   continuous_update=False)
        self.mode = W.ToggleButtons(options=["add", "ablate"], value=mode, description="mode")
        self.plain = W.HTML(layout=W.Layout(width="330px"))
        self.steered = W.HTML(layout=W.Layout(width="330px"))
        self.bars = W.HTML()
        for w, name in ((self.alpha, "alpha"), (self.plain, "plain"), (self.steered, "steered")):
            w.add_class(f"asru-{name}")                           # stable hooks for the browser test
        self.picker.observe(self._on_pick, names="value")
        for control in (self.question, self.layer, self.alpha, self.mode):
            control.observe(lambda change: self.update(), names="value")
        self._show_portrait()
        self.update()

    @property
    def widget(self) -> W.Widget:
        controls = W.VBox([self.picker, self.question, self.layer, self.alpha, self.mode])
        answers = W.HBox([W.VBox([W.HTML("<b>unsteered</b>"), self.plain]),
                          W.VBox([W.HTML("<b>steered</b>"), self.steered])])
        return W.VBox([W.HBox([self.portrait, controls]), answers,
                       W.HTML("<b>projection on each layer's direction</b>"), self.bars]).add_class("asru-steering")

    def _item(self) -> QA:
        return QA(self.question.value, "", self.items[self.picker.value].image)

    def _show_portrait(self) -> None:
        image = self.items[self.picker.value].image
        self.portrait.value = _png(image) if image is not None else b""

    def _on_pick(self, change) -> None:
        self._show_portrait()
        self.question.value = self.items[self.picker.value].question  # fires update when it changes
        self.update()

    def spec(self) -> steer.Steering:
        return steer.Steering(self.directions[self.layer.value], self.layer.value, self.alpha.value, self.mode.value)

    def update(self) -> None:
        """Recompute both answers and the projection bars for the current controls."""
        item = self._item()
        key = (self.picker.value, item.question)
        if key not in self._plain_cache:
            self._plain_cache[key] = steer.generate(self.lens, [item], None, self.max_new_tokens)[0]
        steered = steer.generate(self.lens, [item], self.spec(), self.max_new_tokens)[0]
        self.plain.value = f"<p>{html.escape(self._plain_cache[key])}</p>"
        self.steered.value = f"<p>{html.escape(steered)}</p>"
        acts = probe.activations(self.lens, [item])[0, :, -1]               # (layers, d), last prompt token
        proj = probe.projections(acts[None], self.directions)[0].tolist()
        self.bars.value = projection_bars(proj, self.layer.value)
