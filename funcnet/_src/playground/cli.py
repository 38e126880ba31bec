"""funcnet's command line: ``python -m funcnet playground`` (or ``funcnet playground``).

Runs the TensorFlow Playground experiment given by a Playground link, its
fragment and/or flags (flags win over the link, the link over the
Playground's defaults), prints the panel's train and test losses, and saves
a picture of the result.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

_EPILOG = """\
examples:
  funcnet playground                      # the Playground's default: circle, 4-2 tanh
  funcnet playground "https://playground.tensorflow.org/#activation=relu&dataset=xor&networkShape=8,4"
  funcnet playground --dataset spiral --features x,y,sinX,sinY --network-shape 8,8,4 --epochs 1000
  funcnet playground --dataset xor --frames frames/ --gif xor.gif
  funcnet playground --serve --open         # the Playground's page, training live in JAX

Keys of a link that do not change training are accepted and have no effect:
showTestData (the picture always shows test points), collectStats, tutorial,
hideText, *_hide (page layout) and cosX/cosY (the Playground has no cosine
input). Any other unknown key is an error (or a warning with --allow-unknown).
"""


def _round_down_nicely(n: int) -> int:
    """The largest of 1, 2, 5, 10, 20, 50, ... not above ``n`` (at least 1)."""
    best, scale = 1, 1
    while scale <= n:
        best = max([best] + [m * scale for m in (1, 2, 5) if m * scale <= n])
        scale *= 10
    return best


def _shape(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    sizes = []
    for part in text.split(","):
        try:
            sizes.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"hidden layer sizes are integers separated by commas (e.g. 4,2), got {text!r}"
            ) from None
    return tuple(sizes)


def _add_playground(commands: Any) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "playground",
        help="train a TensorFlow Playground network and draw it",
        description="Train the network of a TensorFlow Playground link (default: the "
        "Playground's own default experiment) and save a picture of its output and losses.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "url", nargs="?", default=None,
        help="a Playground link, or its fragment (activation=tanh&batchSize=10&...)",
    )  # fmt: skip
    group = parser.add_argument_group(
        "Playground settings (default: the link's, else the Playground's)"
    )
    group.add_argument(
        "--dataset",
        help="circle, xor, gauss, spiral (classification) or reg-plane, reg-gauss (regression); "
        "default circle",
    )
    group.add_argument(
        "--activation", help="of the hidden units: relu, tanh, sigmoid, linear; default tanh"
    )
    group.add_argument("--learning-rate", type=float, help="SGD learning rate, > 0; default 0.03")
    group.add_argument(
        "--network-shape", type=_shape,
        help="hidden layer sizes, comma-separated (none for no hidden layer); default 4,2",
    )  # fmt: skip
    group.add_argument("--batch-size", type=int, help="points per weight update; default 10")
    group.add_argument(
        "--noise", type=float, help="noise in percent (the slider: 0 to 50); default 0"
    )
    group.add_argument(
        "--percent-train",
        type=float,
        help="percentage of points for training, 10 to 90; default 50",
    )
    group.add_argument(
        "--features",
        help="input features, comma-separated, among x, y, xSquared (x2), ySquared (y2), "
        "xTimesY (xy), sinX, sinY; default x,y",
    )
    group.add_argument("--regularization", help="none, L1 or L2 (of the weights); default none")
    group.add_argument("--regularization-rate", type=float, help="regularization rate; default 0")
    group.add_argument(
        "--seed", type=int, help="seed of the data, the split and the weights; default 0"
    )
    group.add_argument(
        "--init-zero",
        action="store_true",
        default=None,
        help="start with every weight and bias at 0",
    )
    group.add_argument(
        "--discretize", action="store_true", default=None, help="draw the output as two colours"
    )
    run = parser.add_argument_group("run and output")
    run.add_argument(
        "--epochs", type=int, default=None, help="passes over the training data; default 300"
    )
    run.add_argument(
        "--print-every",
        type=int,
        default=None,
        help="print the losses every N epochs; default about epochs/6",
    )
    run.add_argument(
        "--out", default="playground.png", help="the picture's path; default playground.png"
    )
    run.add_argument("--no-picture", action="store_true", help="print the losses only")
    run.add_argument(
        "--frames", metavar="DIR", help="also save one picture every few epochs in DIR"
    )
    run.add_argument(
        "--frame-every", type=int, help="epochs between frames; default about epochs/20"
    )
    run.add_argument("--gif", metavar="PATH", help="also save the frames as an animated GIF")
    serve = parser.add_argument_group("the page (instead of a run in the terminal)")
    serve.add_argument(
        "--serve",
        action="store_true",
        help="serve the Playground's page on 127.0.0.1, training live in JAX (Ctrl-C stops)",
    )
    serve.add_argument("--port", type=int, default=0, help="the page's port; default: a free one")
    serve.add_argument("--open", action="store_true", help="open the page in the browser")
    run.add_argument(
        "--allow-unknown",
        action="store_true",
        help="warn about unknown keys of the link instead of failing",
    )
    parser.set_defaults(handler=_playground)
    return parser


_FLAGS = {
    "dataset": "dataset", "activation": "activation", "learning_rate": "learning_rate",
    "network_shape": "network_shape", "batch_size": "batch_size", "noise": "noise",
    "percent_train": "percent_train", "features": "features", "regularization": "regularization",
    "regularization_rate": "regularization_rate", "seed": "seed", "init_zero": "init_zero",
    "discretize": "discretize",
}  # fmt: skip


def _describe(config: Any) -> str:
    layers = "-".join(str(n) for n in (len(config.features), *config.network_shape, 1))
    regularization = config.regularization
    if regularization != "none":
        regularization += f" (rate {config.regularization_rate:g})"
    return (
        f"dataset {config.dataset}, features {','.join(config.features)}, network {layers} "
        f"{config.activation}, learning rate {config.learning_rate:g}, batch size "
        f"{config.batch_size}, {config.percent_train:g}% training data, noise "
        f"{config.noise:g}, regularization {regularization}, seed {config.seed}"
    )


def _playground(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from funcnet._src.playground.run import DEFAULT_EPOCHS, PlaygroundConfig, run_playground
    from funcnet._src.playground.url import parse_playground_url

    epochs = DEFAULT_EPOCHS if args.epochs is None else args.epochs
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            config = (
                parse_playground_url(args.url, allow_unknown=args.allow_unknown)
                if args.url
                else PlaygroundConfig()
            )
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        changes = {field: getattr(args, flag) for flag, field in _FLAGS.items()}
        config = config.replace(**{k: v for k, v in changes.items() if v is not None})
        if epochs < 0:
            raise ValueError(f"epochs must be an integer >= 0, got {epochs}.")
        for flag in ("print_every", "frame_every"):
            if getattr(args, flag) is not None and getattr(args, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be at least 1.")
        if args.serve:
            from funcnet._src.playground.session import config_for_page

            config_for_page(config.to_fragment())  # the page's limits, checked before serving
    except ValueError as error:
        parser.error(str(error))
    if args.serve:
        from funcnet._src.playground.server import serve

        if not 0 <= args.port <= 65535:
            parser.error(f"--port must be from 0 to 65535, got {args.port}.")
        return serve(config.to_fragment(), args.port, args.open)
    plot: ModuleType | None = None
    if not args.no_picture or args.frames or args.gif:
        try:
            # import_module, not ``from ... import plot``: the package attribute
            # would outlive a failed import and hide the missing extra.
            plot = importlib.import_module("funcnet._src.playground.plot")
        except ImportError as error:
            print(f"No picture: {error}", file=sys.stderr)

    print(f"Playground: {_describe(config)}")
    print(f"Open it in the browser: {config.to_url()}")
    want_frames = plot is not None and (args.frames or args.gif)
    frame_every = args.frame_every or _round_down_nicely(epochs // 20)
    start = time.perf_counter()
    try:
        result = run_playground(
            config,
            epochs=epochs,
            log_every=args.print_every or _round_down_nicely(epochs // 6),
            snapshot_every=frame_every if want_frames else None,
        )
    except ValueError as error:
        parser.error(str(error))
    seconds = time.perf_counter() - start
    history = result.history
    if result.diverged:
        print(
            f"Diverged: the losses stopped being finite at epoch {result.epochs} of {epochs}, "
            "so training stopped. Try a smaller --learning-rate."
        )
    elif epochs:
        summary = (
            f"Done: {result.epochs} epochs in {seconds:.1f} s. Final train loss "
            f"{history['loss'][-1]:.4f}, test loss {history['test_loss'][-1]:.4f}"
        )
        if "test_accuracy" in history:
            summary += f", test accuracy {100 * history['test_accuracy'][-1]:.1f}%"
        print(summary + ".")
    if plot is None:
        return 0
    if not args.no_picture:
        path = plot.save_playground_png(result, args.out)
        print(f"Saved picture to {os.path.abspath(path)}")
    if want_frames:
        directory = args.frames or os.path.splitext(args.gif)[0] + "_frames"
        paths = plot.save_playground_frames(result, directory, gif=args.gif)
        print(f"Saved {len(paths)} frames to {os.path.abspath(directory)}")
        if args.gif:
            print(f"Saved animation to {os.path.abspath(args.gif)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``funcnet`` command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="funcnet", description="funcnet: pure, composable neural-network layers for JAX."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    playground = _add_playground(commands)
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    return args.handler(args, playground)
