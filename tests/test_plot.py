"""funcnet.plot: history curves, decision boundaries and the Playground's picture."""

import importlib
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.image import imread

from funcnet import plot
from funcnet.playground import run_playground


def _orange_and_blue_fractions(image):
    rgb = image[..., :3]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # The Playground's orange is (0.96, 0.58, 0.13), its blue (0.03, 0.47, 0.74);
    # outputs short of +-1 mix them with white (0.91, 0.92, 0.92).
    orange = (r > 0.8) & (r > b + 0.4) & (g > 0.45) & (g < 0.8)
    blue = (b > 0.55) & (b > r + 0.3) & (g > 0.3) & (g < 0.8)
    return orange.mean(), blue.mean()


@pytest.fixture(scope="module")
def circle_run():
    return run_playground(epochs=100, snapshot_every=50)


def test_colour_scale_is_the_playgrounds():
    np.testing.assert_allclose(plot.PLAYGROUND_CMAP(0.0)[:3], to_rgb("#f59322"), atol=0.01)
    np.testing.assert_allclose(plot.PLAYGROUND_CMAP(0.5)[:3], to_rgb("#e8eaeb"), atol=0.01)
    np.testing.assert_allclose(plot.PLAYGROUND_CMAP(1.0)[:3], to_rgb("#0877bd"), atol=0.01)


def test_plot_history_groups_partners_and_keeps_the_values():
    history = {"loss": [1.0, 0.5, 0.25], "val_loss": [1.2, 0.8, 0.6], "accuracy": [0.2, 0.6, 0.9]}
    axes = plot.plot_history(history)
    assert [a.get_title() for a in axes] == ["loss", "accuracy"]
    lines = {line.get_label(): line for line in axes[0].get_lines()}
    assert set(lines) == {"loss", "val_loss"}
    np.testing.assert_array_equal(lines["val_loss"].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(lines["val_loss"].get_ydata(), [1.2, 0.8, 0.6])
    assert lines["val_loss"].get_linestyle() == "--"
    # One given axes takes every curve; names select some.
    ax = Figure().add_subplot()
    assert plot.plot_history(history, ax, names=["accuracy"], log_scale=True) == [ax]
    assert len(ax.get_lines()) == 1 and ax.get_yscale() == "log"


def test_plot_history_errors():
    with pytest.raises(
        ValueError, match=r"plot_history: nothing to plot; the history has \['loss'\]"
    ):
        plot.plot_history({"loss": [1.0]}, names=["accuracy"])
    axes = Figure().subplots(1, 3)
    with pytest.raises(ValueError, match=r"plot_history: got 3 axes for 1 panels"):
        plot.plot_history({"loss": [1.0]}, list(axes))


def test_decision_boundary_heat_map_is_the_models_output():
    ax = plot.plot_decision_boundary(
        lambda p: np.tanh(p[:, 0] - p[:, 1]),
        resolution=21,
        extent=2.0,
        points=np.array([[1.0, 1.0]]),
        labels=np.array([1.0]),
        test_points=np.array([[-1.0, 1.0]]),
        test_labels=np.array([-1.0]),
    )
    assert isinstance(ax, Axes)
    image = ax.images[0]
    values = np.asarray(image.get_array())
    grid = np.linspace(-2, 2, 21)
    # Row i is y = grid[i] (origin at the bottom), column j is x = grid[j].
    np.testing.assert_allclose(values, np.tanh(grid[None, :] - grid[:, None]), rtol=1e-5)
    assert image.get_extent() == [-2.0, 2.0, -2.0, 2.0]
    assert (image.norm.vmin, image.norm.vmax) == (-1.0, 1.0)
    assert len(ax.collections) >= 2  # the boundary line and both point sets
    edges = [
        c.get_edgecolor()[0][:3].tolist() for c in ax.collections if c.get_offsets().shape == (1, 2)
    ]
    assert [1.0, 1.0, 1.0] in edges and [0.0, 0.0, 0.0] in edges


def test_decision_boundary_discretized_and_probabilities():
    ax = plot.plot_decision_boundary(
        lambda p: 1 / (1 + np.exp(-p[:, 0])), resolution=10, vmin=0.0, discretize=True
    )
    assert set(np.unique(np.asarray(ax.images[0].get_array()))) == {0.0, 1.0}
    with pytest.raises(
        ValueError,
        match=r"plot_decision_boundary: predict must return one score per point, got shape \(3,\) for 100 points",
    ):
        plot.plot_decision_boundary(lambda p: np.zeros(3), resolution=10)


def test_playground_png_has_the_size_and_both_colours(circle_run, tmp_path):
    path = plot.save_playground_png(circle_run, tmp_path / "sub" / "run.png")
    image = imread(path)
    assert image.shape[:2] == (450, 1000)
    orange, blue = _orange_and_blue_fractions(image)
    # The circle's output: blue inside, orange outside, each a real part of the picture.
    assert orange > 0.05 and blue > 0.02
    assert image[..., :3].std() > 0.1  # not blank


def test_playground_figure_panels(circle_run):
    figure = plot.playground_figure(circle_run)
    heat, losses = figure.axes[:2]
    assert heat.get_title() == "circle: output after epoch 100"
    curves = {line.get_label(): line.get_ydata() for line in losses.get_lines()}
    np.testing.assert_allclose(curves["train loss"], circle_run.history["loss"])
    np.testing.assert_allclose(curves["test loss"], circle_run.history["test_loss"])
    assert losses.get_title().startswith(f"train loss {circle_run.history['loss'][-1]:.4f}")


def test_frames_and_gif(circle_run, tmp_path):
    gif = tmp_path / "run.gif"
    paths = plot.save_playground_frames(circle_run, tmp_path / "frames", gif=gif)
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        "epoch_0000.png",
        "epoch_0050.png",
        "epoch_0100.png",
    ]
    # The first frame is the untrained network, the last the trained one: only it is clearly blue.
    first, last = (_orange_and_blue_fractions(imread(p)) for p in (paths[0], paths[-1]))
    assert last[1] > first[1]
    from PIL import Image

    with Image.open(gif) as animation:
        assert animation.n_frames == 3 and animation.size == (1000, 450)


def test_frames_need_snapshots(tmp_path):
    run = run_playground(epochs=1)
    with pytest.raises(
        ValueError,
        match=r"the run kept no snapshots\. Run it with run_playground\(\.\.\., snapshot_every=N\)",
    ):
        plot.save_playground_frames(run, tmp_path)


def test_missing_matplotlib_says_how_to_install_it(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    for module in ("funcnet.plot", "funcnet._src.playground.plot"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(
        ImportError,
        match=r'funcnet\.plot needs matplotlib, an optional extra: pip install "funcnet\[plot\]"',
    ):
        importlib.import_module("funcnet.plot")
