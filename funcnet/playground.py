"""The TensorFlow Playground in JAX: its links as reproducible experiments.

``python -m funcnet playground [URL]`` runs one from the command line; this
namespace runs them from Python. See docs/playground.md.
"""

from funcnet._src.playground.model import PlaygroundFeatures as PlaygroundFeatures
from funcnet._src.playground.model import half_squared_error as half_squared_error
from funcnet._src.playground.model import playground_network as playground_network
from funcnet._src.playground.model import playground_optimizer as playground_optimizer
from funcnet._src.playground.model import playground_regularization as playground_regularization
from funcnet._src.playground.run import DEFAULT_EPOCHS as DEFAULT_EPOCHS
from funcnet._src.playground.run import PlaygroundData as PlaygroundData
from funcnet._src.playground.run import PlaygroundResult as PlaygroundResult
from funcnet._src.playground.run import playground_dataset as playground_dataset
from funcnet._src.playground.run import run_playground as run_playground
from funcnet._src.playground.url import PlaygroundConfig as PlaygroundConfig
from funcnet._src.playground.url import parse_playground_url as parse_playground_url
from funcnet._src.playground.url import seed_from_string as seed_from_string

__all__ = [
    "DEFAULT_EPOCHS",
    "PlaygroundConfig",
    "PlaygroundData",
    "PlaygroundFeatures",
    "PlaygroundResult",
    "half_squared_error",
    "parse_playground_url",
    "playground_dataset",
    "playground_network",
    "playground_optimizer",
    "playground_regularization",
    "run_playground",
    "seed_from_string",
]
