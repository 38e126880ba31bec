"""The TensorFlow Playground's settings, and its URLs as reproducible configs.

A Playground link such as
``https://playground.tensorflow.org/#activation=tanh&batchSize=10&dataset=circle&...``
keeps every setting in its fragment (after ``#``), as the Playground's
``src/state.ts`` writes it. :func:`parse_playground_url` turns a link (or the
bare fragment) into a :class:`PlaygroundConfig`; :meth:`PlaygroundConfig.to_url`
goes back, so a funcnet run can be opened in the browser and vice versa.
Which keys are accepted, how seeds map, and why unknown keys are errors:
``docs/playground.md``.

>>> from funcnet.playground import parse_playground_url
>>> parse_playground_url("dataset=xor&networkShape=8,4").network_shape
(8, 4)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import urllib.parse
import warnings
import zlib
from typing import Any

from funcnet._src.playground.datasets import CLASSIFICATION, REGRESSION

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
"""The Playground's activation names."""

REGULARIZATIONS = ("none", "L1", "L2")
"""The Playground's regularization names."""

FEATURES = ("x", "y", "xSquared", "ySquared", "xTimesY", "sinX", "sinY")
"""The Playground's input features, in its input order: x, y, x², y², xy, sin x, sin y."""

FEATURE_ALIASES = {"x2": "xSquared", "y2": "ySquared", "xy": "xTimesY"}
"""Short spellings accepted on the command line."""

DATASETS = (*CLASSIFICATION, *REGRESSION)

# Keys the Playground writes that change nothing in training (see the module docstring).
_NO_EFFECT_FLAGS = ("showTestData", "collectStats", "hideText", "cosX", "cosY")
_NO_EFFECT_KEYS = (*_NO_EFFECT_FLAGS, "tutorial")
_KNOWN_KEYS = (
    "activation", "regularization", "batchSize", "dataset", "regDataset", "learningRate",
    "regularizationRate", "noise", "networkShape", "seed", "discretize", "percTrainData",
    *FEATURES, "problem", "initZero", *_NO_EFFECT_KEYS,
)  # fmt: skip
_HIDE_SUFFIX = "_hide"

PLAYGROUND_URL = "https://playground.tensorflow.org/"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class PlaygroundConfig:
    """The settings of one Playground experiment; the defaults are the Playground's.

    Attributes:
        dataset: ``circle``, ``xor``, ``gauss``, ``spiral`` (classification)
            or ``reg-plane``, ``reg-gauss`` (regression).
        activation: of the hidden units: ``relu``, ``tanh``, ``sigmoid``, ``linear``.
        learning_rate: the SGD step size, > 0.
        regularization: ``none``, ``L1`` or ``L2`` (of the weights, not the biases).
        regularization_rate: the regularization's rate, >= 0.
        network_shape: the sizes of the hidden layers (may be empty).
        batch_size: points per weight update, >= 1.
        noise: the noise in percent, 0 to 100 (the Playground's slider: 0 to 50).
        percent_train: the percentage of points used for training, 10 to 90.
        features: input features, among :data:`FEATURES`.
        seed: the seed of the data, the split and the initial weights.
        init_zero: start with all weights and biases at 0 (the URL's ``initZero``).
        discretize: draw the output as two colours (its sign) in the picture.

    Example:
        >>> config = PlaygroundConfig(network_shape=(3,), features=("y", "x"))
        >>> config.features, config.problem
        (('x', 'y'), 'classification')
    """

    dataset: str = "circle"
    activation: str = "tanh"
    learning_rate: float = 0.03
    regularization: str = "none"
    regularization_rate: float = 0.0
    network_shape: tuple[int, ...] = (4, 2)
    batch_size: int = 10
    noise: float = 0.0
    percent_train: float = 50.0
    features: tuple[str, ...] = ("x", "y")
    seed: int = 0
    init_zero: bool = False
    discretize: bool = False

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.dataset not in DATASETS:
            raise ValueError(
                f"unknown dataset {self.dataset!r}. Valid names: {', '.join(DATASETS)}."
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}. Valid names: {', '.join(ACTIVATIONS)}."
            )
        regularization = {r.lower(): r for r in REGULARIZATIONS}.get(
            str(self.regularization).lower()
        )
        if regularization is None:
            raise ValueError(
                f"unknown regularization {self.regularization!r}. "
                f"Valid names: {', '.join(REGULARIZATIONS)}."
            )
        put("regularization", regularization)
        put("features", canonical_features(self.features))
        shape = tuple(self.network_shape)
        for size in shape:
            if not _is_int(size) or size <= 0:
                raise ValueError(
                    f"every hidden layer needs at least one unit, got network_shape "
                    f"{list(shape)}. Give positive sizes such as 4,2 (or none for no hidden layer)."
                )
        put("network_shape", shape)
        _check_number("learning_rate", self.learning_rate, low=0.0, low_open=True)
        _check_number("regularization_rate", self.regularization_rate, low=0.0)
        _check_number("noise", self.noise, low=0.0, high=100.0)
        _check_number("percent_train", self.percent_train, low=10.0, high=90.0)
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}.")
        if not _is_int(self.seed):
            raise ValueError(f"seed must be an integer, got {self.seed!r}.")

    @property
    def problem(self) -> str:
        """``"classification"`` or ``"regression"``, from the dataset."""
        return "classification" if self.dataset in CLASSIFICATION else "regression"

    def replace(self, **changes: Any) -> PlaygroundConfig:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_fragment(self) -> str:
        """The URL fragment (without ``#``) the Playground would write for these settings.

        Example:
            >>> PlaygroundConfig().to_fragment()[:56]
            'activation=tanh&regularization=none&batchSize=10&dataset'
        """
        regression = self.problem == "regression"
        values: dict[str, Any] = {
            "activation": self.activation,
            "regularization": self.regularization,
            "batchSize": self.batch_size,
            "dataset": "circle" if regression else self.dataset,
            "regDataset": self.dataset if regression else "reg-plane",
            "learningRate": self.learning_rate,
            "regularizationRate": self.regularization_rate,
            "noise": self.noise,
            "networkShape": ",".join(str(n) for n in self.network_shape),
            "seed": self.seed,
            "showTestData": True,
            "discretize": self.discretize,
            "percTrainData": self.percent_train,
            **{name: name in self.features for name in FEATURES},
            "problem": self.problem,
            "initZero": self.init_zero,
        }
        return "&".join(f"{key}={_format(value)}" for key, value in values.items())

    def to_url(self) -> str:
        """A link that opens these settings in the TensorFlow Playground."""
        return f"{PLAYGROUND_URL}#{self.to_fragment()}"


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_number(
    name: str,
    value: Any,
    *,
    low: float,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}.")
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value > high):
        if high is not None:
            bounds = f"between {low:g} and {high:g}"
        else:
            bounds = f"greater than {low:g}" if low_open else f"at least {low:g}"
        raise ValueError(f"{name} must be {bounds}, got {value!r}.")


def canonical_features(features: Any) -> tuple[str, ...]:
    """Feature names (a sequence or a comma-separated string) in the Playground's order.

    Names are matched case-insensitively; ``x2``, ``y2`` and ``xy`` are accepted too.

    Example:
        >>> canonical_features("xy,X")
        ('x', 'xTimesY')
    """
    if isinstance(features, str):
        features = [f for f in features.split(",") if f.strip()]
    by_lower = {name.lower(): name for name in FEATURES}
    by_lower.update(FEATURE_ALIASES)
    chosen = set()
    for feature in features:
        name = by_lower.get(str(feature).strip().lower())
        if name is None:
            raise ValueError(
                f"unknown feature {feature!r}. Valid names: {', '.join(FEATURES)} "
                f"(or {', '.join(FEATURE_ALIASES)})."
            )
        chosen.add(name)
    if not chosen:
        raise ValueError(f"select at least one input feature among {', '.join(FEATURES)}.")
    # The network's inputs follow the Playground's order, whatever order they were given in.
    return tuple(name for name in FEATURES if name in chosen)


def _fragment_of(text: str) -> str:
    text = text.strip()
    if "#" in text:
        return text.split("#", 1)[1]
    if text.startswith(("http://", "https://")):
        raise ValueError(
            f"malformed Playground URL {text!r}: it has no '#' fragment. Copy the whole "
            "address from the browser, e.g. https://playground.tensorflow.org/#activation=tanh&..."
        )
    return text


def _pairs(fragment: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for part in fragment.split("&"):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(
                f"malformed fragment: {part!r} has no '='. A fragment is key=value pairs "
                "joined by '&', e.g. activation=tanh&networkShape=4,2."
            )
        key, value = part.split("=", 1)
        key, value = urllib.parse.unquote(key).strip(), urllib.parse.unquote(value).strip()
        if not key:
            raise ValueError(f"malformed fragment: {part!r} has an empty key.")
        if key in pairs:
            raise ValueError(f"malformed fragment: the key {key!r} appears twice.")
        pairs[key] = value
    return pairs


def _number(key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"malformed fragment: {key}={value!r} is not a number.") from None
    if not math.isfinite(number):
        raise ValueError(f"malformed fragment: {key}={value!r} is not a finite number.")
    return number


def _integer(key: str, value: str) -> int:
    number = _number(key, value)
    if not number.is_integer():
        raise ValueError(f"malformed fragment: {key}={value!r} is not a whole number.")
    return int(number)


def _boolean(key: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ValueError(f"malformed fragment: {key}={value!r} must be true or false.")
    return value.lower() == "true"


def seed_from_string(seed: str) -> int:
    """The integer seed funcnet uses for the Playground's ``seed`` string.

    Example:
        >>> seed_from_string("42"), seed_from_string("0.59680") == seed_from_string("0.59680")
        (42, True)
    """
    try:
        return int(seed)
    except ValueError:
        return zlib.crc32(seed.encode())


def _unknown_keys(pairs: dict[str, str]) -> list[str]:
    return [k for k in pairs if k not in _KNOWN_KEYS and not k.endswith(_HIDE_SUFFIX)]


def _report_unknown(unknown: list[str], allow_unknown: bool) -> None:
    described = []
    for key in unknown:
        close = difflib.get_close_matches(key, _KNOWN_KEYS, n=1)
        described.append(f"{key} (did you mean {close[0]}?)" if close else key)
    message = (
        f"unknown Playground URL keys: {', '.join(described)}. "
        f"Known keys: {', '.join(_KNOWN_KEYS)}, and <control>_hide."
    )
    if not allow_unknown:
        raise ValueError(f"{message} Pass allow_unknown=True (--allow-unknown) to ignore them.")
    warnings.warn(f"{message} They are ignored.", stacklevel=3)


def parse_playground_url(text: str, *, allow_unknown: bool = False) -> PlaygroundConfig:
    """The settings of a Playground link or of its fragment.

    Keys missing from the fragment keep the Playground's defaults.

    Args:
        text: a whole link (``https://playground.tensorflow.org/#...``), or its
            fragment with or without the leading ``#``.
        allow_unknown: warn about unknown keys instead of raising.

    Returns:
        A :class:`PlaygroundConfig`.

    Example:
        >>> config = parse_playground_url("#activation=relu&networkShape=8&xTimesY=true&x=false")
        >>> config.activation, config.network_shape, config.features
        ('relu', (8,), ('y', 'xTimesY'))
    """
    pairs = _pairs(_fragment_of(text))
    unknown = _unknown_keys(pairs)
    if unknown:
        _report_unknown(unknown, allow_unknown)
    # As in the browser, an empty value keeps the default (except networkShape: no hidden layer).
    given = {k: v for k, v in pairs.items() if v != "" or k == "networkShape"}
    changes: dict[str, Any] = {}
    if "activation" in given:
        changes["activation"] = given["activation"]
    if "regularization" in given:
        changes["regularization"] = _regularization(given["regularization"])
    for key, field in (
        ("learningRate", "learning_rate"),
        ("regularizationRate", "regularization_rate"),
        ("noise", "noise"),
        ("percTrainData", "percent_train"),
    ):
        if key in given:
            changes[field] = _number(key, given[key])
    if "noise" in changes:
        changes["noise"] = _site_noise(changes["noise"])
    if "batchSize" in given:
        changes["batch_size"] = _integer("batchSize", given["batchSize"])
    if "networkShape" in given:
        sizes = [s for s in given["networkShape"].split(",") if s.strip()]
        changes["network_shape"] = tuple(_integer("networkShape", s) for s in sizes)
    if "seed" in given:
        changes["seed"] = seed_from_string(given["seed"])
    for key, field in (("initZero", "init_zero"), ("discretize", "discretize")):
        if key in given:
            changes[field] = _boolean(key, given[key])
    for key in _NO_EFFECT_FLAGS:
        if key in given:
            _boolean(key, given[key])  # no effect, but a typo in the value is still an error
    features = {name: name in PlaygroundConfig.features for name in FEATURES}
    features.update({k: _boolean(k, given[k]) for k in FEATURES if k in given})
    changes["features"] = tuple(name for name, on in features.items() if on)
    changes["dataset"] = _dataset(given)
    return PlaygroundConfig(**changes)


def _regularization(name: str) -> str:
    known = {r.lower(): r for r in REGULARIZATIONS}
    if name.lower() in known:
        return known[name.lower()]
    # The site's state.ts keeps its default for a name it does not know: no regularization.
    warnings.warn(
        f"unknown regularization {name!r} in the link: the Playground treats it as none, and "
        f"so does funcnet. Valid names: {', '.join(REGULARIZATIONS)}.",
        stacklevel=3,
    )
    return "none"


def _site_noise(noise: float) -> float:
    """The noise the site's page uses for a link's value (playground.ts, the noise slider)."""
    if noise > 80:
        return 50.0  # the site resets a noise above 80 to 50
    return max(noise, 0.0)  # and a negative one to 0


def _dataset(given: dict[str, str]) -> str:
    problem = given.get("problem", "")
    if problem not in ("", "classification", "regression"):
        raise ValueError(f"unknown problem {problem!r}. Valid names: classification, regression.")
    # As on the site, `problem` alone chooses between `dataset` (classification, default
    # circle) and `regDataset` (regression, default reg-plane); a dataset of the other
    # problem in either key leaves that key at its default.
    if problem == "regression":
        dataset = given.get("regDataset", "reg-plane")
        return "reg-plane" if dataset in CLASSIFICATION else dataset
    dataset = given.get("dataset", "circle")
    return "circle" if dataset in REGRESSION else dataset
