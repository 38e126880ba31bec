"""Pictures of training: loss curves and decision boundaries (needs matplotlib).

matplotlib is an optional extra: ``pip install "funcnet[plot]"``. Importing
this module without it raises an ImportError that says so.

* :func:`plot_history` draws a ``fit`` history (one value per epoch per
  name); a name and its ``val_``/``test_`` partner share one panel.
* :func:`plot_decision_boundary` draws the output of any 2-D model over a
  square as a heat map, with the Playground's colours.
* :func:`playground_figure`, :func:`save_playground_png` and
  :func:`save_playground_frames` draw a :class:`funcnet.playground.PlaygroundResult`.

Every function takes an optional ``ax`` and returns what it drew on; figures
never go through ``pyplot`` (``docs/playground.md`` says why).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

try:
    from matplotlib.axes import Axes
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure
except ImportError as error:  # pragma: no cover - exercised by a test that hides matplotlib
    raise ImportError(
        'funcnet.plot needs matplotlib, an optional extra: pip install "funcnet[plot]" '
        '(or pip install "matplotlib>=3.7").'
    ) from error

ORANGE, WHITE, BLUE = "#f59322", "#e8eaeb", "#0877bd"
"""The Playground's colours for -1, 0 and +1."""

PLAYGROUND_CMAP = LinearSegmentedColormap.from_list("playground", [ORANGE, WHITE, BLUE])
"""Orange (-1) to near-white (0) to blue (+1), as the Playground colours outputs."""

SHADES = 31
"""The Playground's heat maps quantise the output's scale into 31 colours (heatmap.ts)."""

ALPHA = 160 / 255
"""The Playground's heat maps are drawn at opacity 160/255."""

FIGSIZE = (10.0, 4.5)
DPI = 100
"""``save_playground_png`` writes ``FIGSIZE * DPI`` = 1000 x 450 pixels by default."""

_PARTNER_PREFIXES = ("val_", "test_")


def _new_axes(ax: Axes | None, figsize: tuple[float, float] = (5.0, 4.0)) -> Axes:
    if ax is not None:
        return ax
    return Figure(figsize=figsize).add_subplot()


def _groups(history: dict[str, Sequence[float]]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for name in history:
        base = name
        for prefix in _PARTNER_PREFIXES:
            if name.startswith(prefix) and name[len(prefix) :] in history:
                base = name[len(prefix) :]
        groups.setdefault(base, []).append(name)
    return list(groups.values())


def plot_history(
    history: dict[str, Sequence[float]],
    ax: Axes | Sequence[Axes] | None = None,
    *,
    names: Sequence[str] | None = None,
    log_scale: bool = False,
) -> list[Axes]:
    """Plots per-epoch values: one panel per name, with its ``val_``/``test_`` partner.

    Args:
        history: ``{"loss": [...], "test_loss": [...], ...}``, e.g. ``fit(...).history``.
        ax: one axes (every curve on it), one axes per panel, or None for a new figure.
        names: the names to draw (default: all).
        log_scale: a logarithmic y axis (useful for losses).

    Returns:
        The axes drawn on.

    Example:
        >>> axes = plot_history({"loss": [1.0, 0.5], "test_loss": [1.1, 0.7], "accuracy": [0.5, 0.9]})
        >>> [a.get_title() for a in axes], len(axes[0].get_lines())
        (['loss', 'accuracy'], 2)
    """
    chosen = {k: v for k, v in history.items() if names is None or k in names}
    if not chosen:
        raise ValueError(f"plot_history: nothing to plot; the history has {list(history)}.")
    groups = _groups(chosen)
    if ax is None:
        figure = Figure(figsize=(4.5 * len(groups), 3.5), layout="constrained")
        axes = list(np.atleast_1d(figure.subplots(1, len(groups))))
    elif isinstance(ax, Axes):
        axes = [ax] * len(groups)
    else:
        axes = list(ax)
        if len(axes) != len(groups):
            raise ValueError(
                f"plot_history: got {len(axes)} axes for {len(groups)} panels ({groups})."
            )
    for panel, group in zip(axes, groups):
        for name in group:
            values = np.asarray(chosen[name], dtype=float)
            style = "--" if name.startswith(_PARTNER_PREFIXES) else "-"
            panel.plot(np.arange(1, len(values) + 1), values, style, label=name)
        panel.set_title(group[0])
        panel.set_xlabel("epoch")
        if log_scale:
            panel.set_yscale("log")
        panel.legend()
    return list(dict.fromkeys(axes))


def plot_decision_boundary(
    predict: Callable[[np.ndarray], Any],
    ax: Axes | None = None,
    *,
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    test_points: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    extent: float = 6.0,
    resolution: int = 100,
    vmin: float = -1.0,
    vmax: float = 1.0,
    discretize: bool = False,
    boundary: bool = True,
    shades: int | None = SHADES,
) -> Axes:
    """The output of a 2-D model over ``[-extent, extent]^2`` as a heat map, with points.

    Args:
        predict: maps points ``[m, 2]`` to scores ``[m]`` or ``[m, 1]``; with
            the default colour range, -1 (orange) and +1 (blue) are the two
            classes. For probabilities in [0, 1] pass ``vmin=0``.
        ax: the axes to draw on, or None for a new figure.
        points: training points ``[n, 2]``, drawn with a white edge.
        labels: their labels ``[n]``.
        test_points: test points ``[m, 2]``, drawn with a black edge.
        test_labels: their labels ``[m]``.
        extent: half the side of the square.
        resolution: grid cells per side.
        vmin: the score drawn fully orange.
        vmax: the score drawn fully blue; the boundary line is drawn
            halfway between ``vmin`` and ``vmax``.
        discretize: colour each cell by its side of the boundary only.
        boundary: draw the line where the score crosses halfway (the
            Playground draws none).
        shades: colours of the scale, as the Playground's heat map (31);
            None for a continuous scale.

    Returns:
        The axes.

    Example:
        >>> ax = plot_decision_boundary(lambda p: np.tanh(p[:, 0]), resolution=20)
        >>> ax.images[0].get_array().shape
        (20, 20)
    """
    ax = _new_axes(ax)
    grid = np.linspace(-extent, extent, resolution)
    gx, gy = np.meshgrid(grid, grid)
    scores = np.asarray(predict(np.stack([gx.ravel(), gy.ravel()], axis=-1).astype(np.float32)))
    if scores.size != gx.size:
        raise ValueError(
            f"plot_decision_boundary: predict must return one score per point, got shape "
            f"{scores.shape} for {gx.size} points."
        )
    scores = scores.reshape(gx.shape).astype(float)
    middle = (vmin + vmax) / 2
    shown = np.where(scores >= middle, vmax, vmin) if discretize else scores
    ax.imshow(
        shown, origin="lower", extent=(-extent, extent, -extent, extent),
        cmap=PLAYGROUND_CMAP if shades is None else PLAYGROUND_CMAP.resampled(shades),
        vmin=vmin, vmax=vmax, interpolation="nearest",
        alpha=ALPHA,  # lighter than the points, so points of either label stand out, as in the Playground
    )  # fmt: skip
    if boundary and np.nanmin(scores) < middle < np.nanmax(scores):
        ax.contour(gx, gy, scores, levels=[middle], colors="#555555", linewidths=0.8)
    sets = (("train", points, labels, "white"), ("test", test_points, test_labels, "black"))
    for name, xy, lab, edge in sets:
        if xy is None:
            continue
        xy = np.asarray(xy)
        colour = None if lab is None else np.asarray(lab).reshape(-1)
        ax.scatter(
            xy[:, 0], xy[:, 1], c=colour, cmap=PLAYGROUND_CMAP, vmin=vmin, vmax=vmax,
            s=18, edgecolors=edge, linewidths=0.8, label=f"{name} points",
        )  # fmt: skip
    if points is not None and test_points is not None:
        ax.legend(loc="upper right", fontsize=7, framealpha=0.6)
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    return ax


def playground_figure(result: Any, *, params: Any = None, epoch: int | None = None) -> Figure:
    """The Playground's view of a run: output heat map with points, and the loss curves.

    Args:
        result: a :class:`funcnet.playground.PlaygroundResult`.
        params: draw the output of these params (a snapshot) instead of the final ones.
        epoch: the epoch these params belong to (default: the last); the loss
            curves stop there.

    Returns:
        A matplotlib Figure of ``FIGSIZE`` inches.
    """
    history = result.history
    epochs = len(history.get("loss", [])) - 1  # entry 0 is before training
    epoch = epochs if epoch is None else epoch
    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[1.0, 1.25])
    config, data = result.config, result.data
    plot_decision_boundary(
        lambda p: result.predict(p, params), left,
        points=data.train_x, labels=data.train_y, test_points=data.test_x, test_labels=data.test_y,
        discretize=config.discretize, boundary=False,
    )  # fmt: skip
    left.set_title(f"{config.dataset}: output after epoch {epoch}")
    shown = {k: history[k][: epoch + 1] for k in ("loss", "test_loss") if k in history}
    if epoch > 0 and shown:
        plot_history(
            {"train loss" if k == "loss" else "test loss": v for k, v in shown.items()}, right
        )
        # The Playground's line chart: train in grey, test in black.
        for line, colour in zip(right.get_lines(), ("#777777", "black")):
            line.set_color(colour)
            line.set_xdata(np.arange(epoch + 1))  # from epoch 0, as the site's chart
        right.legend()
        right.set_xlim(0, max(epochs, 1))
        # The site's chart spans [min, max] of the losses; fixed to the whole run,
        # so that frames of one run share their scale.
        values = [v for k in shown for v in history[k] if np.isfinite(v)]
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        right.set_ylim(low, high if high > low else low + 1.0)
        right.set_title(
            f"train loss {shown['loss'][-1]:.4f}, test loss {shown['test_loss'][-1]:.4f}"
        )
    else:
        right.set_title("loss (no epochs yet)")
        right.set_xlabel("epoch")
    right.set_ylabel("loss: mean of 0.5 (output - target)^2")
    return figure


def save_playground_png(result: Any, path: str | os.PathLike = "playground.png") -> str:
    """Writes :func:`playground_figure` as a PNG of 1000 x 450 pixels and returns its path."""
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    playground_figure(result).savefig(path, dpi=DPI)
    return path


def save_playground_frames(
    result: Any, directory: str | os.PathLike, *, gif: str | os.PathLike | None = None
) -> list[str]:
    """One PNG per snapshot of the run (``epoch_0000.png``, ...), and optionally an animated GIF.

    Args:
        result: a run made with ``snapshot_every`` set.
        directory: where the frames go (created if needed).
        gif: also write the frames as an animated GIF at this path.

    Returns:
        The paths of the frames, in epoch order.
    """
    if not result.snapshots:
        raise ValueError(
            "save_playground_frames: the run kept no snapshots. Run it with "
            "run_playground(..., snapshot_every=N)."
        )
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    paths = []
    for epoch, params in result.snapshots:
        path = os.path.join(directory, f"epoch_{epoch:04d}.png")
        playground_figure(result, params=params, epoch=epoch).savefig(path, dpi=DPI)
        paths.append(path)
    if gif is not None:
        from PIL import Image  # matplotlib depends on Pillow

        frames = [Image.open(p).convert("RGB") for p in paths]
        frames[0].save(
            os.fspath(gif), save_all=True, append_images=frames[1:], duration=200, loop=0
        )
    return paths


__all__ = [
    "BLUE",
    "ORANGE",
    "PLAYGROUND_CMAP",
    "WHITE",
    "playground_figure",
    "plot_decision_boundary",
    "plot_history",
    "save_playground_frames",
    "save_playground_png",
]
