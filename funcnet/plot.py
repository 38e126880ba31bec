"""Pictures of training: loss curves and decision boundaries (needs matplotlib).

matplotlib is an optional extra: ``pip install "funcnet[plot]"``. Importing
this module without it raises an ImportError that says so.
"""

from funcnet._src.playground.plot import PLAYGROUND_CMAP as PLAYGROUND_CMAP
from funcnet._src.playground.plot import playground_figure as playground_figure
from funcnet._src.playground.plot import plot_decision_boundary as plot_decision_boundary
from funcnet._src.playground.plot import plot_history as plot_history
from funcnet._src.playground.plot import save_playground_frames as save_playground_frames
from funcnet._src.playground.plot import save_playground_png as save_playground_png

__all__ = [
    "PLAYGROUND_CMAP",
    "playground_figure",
    "plot_decision_boundary",
    "plot_history",
    "save_playground_frames",
    "save_playground_png",
]
