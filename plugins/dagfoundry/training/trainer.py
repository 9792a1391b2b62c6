"""The spec's trainer: ``module:function(frame, label_column, params) -> fitted model``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dagfoundry.errors import TrainerError

if TYPE_CHECKING:
    import pandas as pd


def load_trainer(entrypoint: str) -> Callable[..., Any]:
    """Import ``module:function`` and return the function.

    :raises TrainerError: the module or the function is missing, or it is not callable
    """
    module_name, _, attribute = entrypoint.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TrainerError(f"trainer {entrypoint!r}: cannot import module {module_name!r}: {exc}") from None
    function = getattr(module, attribute, None)
    if function is None or not callable(function):
        raise TrainerError(f"trainer {entrypoint!r}: module {module_name!r} has no function {attribute!r}")
    return function


def fit(entrypoint: str, frame: pd.DataFrame, label_column: str, params: dict[str, Any]) -> Any:
    """Call the trainer on the training frame (features and label) and return its model.

    :raises TrainerError: the trainer raised, or returned an object without ``predict``
    """
    function = load_trainer(entrypoint)
    try:
        model = function(frame, label_column, dict(params))
    except Exception as exc:
        raise TrainerError(f"trainer {entrypoint!r} raised {type(exc).__name__}: {exc}") from exc
    if not hasattr(model, "predict"):
        raise TrainerError(f"trainer {entrypoint!r} returned {type(model).__name__}, which has no predict()")
    return model
