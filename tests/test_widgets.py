"""The steering widget, driven headlessly: moving the controls changes what it displays."""
import time

import pytest

from asru_lens.core import data

from asru_lens.interpret import probe
from asru_lens.show.widgets import SteeringWidget, projection_bars


@pytest.fixture(scope="module")
def widget(organism, world_folder):
    items = data.generation_items(data.load_split(world_folder, "forget_10"))[:4]
    directions = torch_directions(organism, world_folder, items)
    return SteeringWidget(organism, items, directions, layer=2, alpha=0.0)


def torch_directions(organism, world_folder, items):
    """The ASRU direction at the last prompt token: unseen faces minus these forget questions."""
    from asru_lens.organism.evaluate import unknown_items
    unknown = unknown_items(world_folder)[:24]
    return probe.diff_in_means(probe.mean_activations(organism, unknown),
                               probe.mean_activations(organism, items))[:, -1]


def test_slider_changes_the_steered_answer(widget):
    assert widget.steered.value == widget.plain.value          # alpha 0: identical
    before = widget.steered.value
    t = time.perf_counter()
    widget.alpha.value = 2.0                                   # fires the observer, as the browser would
    elapsed = time.perf_counter() - t
    assert widget.steered.value != before and "sorry" in widget.steered.value.lower()
    assert widget.plain.value == before                        # the unsteered answer stays
    assert elapsed < 5                                         # generous here; the 1 s goal is benchmarked


def test_picker_and_layer_update_the_panel(widget):
    bars = widget.bars.value
    widget.picker.value = 1
    assert widget.question.value == widget.items[1].question
    assert widget.bars.value != bars and bytes(widget.portrait.value).startswith(b"\x89PNG")
    widget.layer.value = 3
    assert 'fill="#d62728"' in widget.bars.value and widget.widget.children


def test_projection_bars_svg():
    svg = projection_bars([1.0, -2.0, 0.5], chosen=1)
    assert svg.count("<rect") == 3 and svg.count("#d62728") == 1 and "layer 1: -2.00" in svg
