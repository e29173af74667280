"""Feature columns by name: the names a model describes, and which of a table's columns feed it.

Where the model names its features (`feature_names` in its description: an MLflow signature's columns
or `feature_names_in_` of a model fitted on a DataFrame), a table with column names is read by name:
its columns are put in the model's order, and a missing or unknown column is refused by name. A table
without names (.npy, a CSV read with no header, an array) and any table for a model without names is
read by position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import InvalidRequest

__all__ = ["BY_POSITION", "choose_columns", "columns_label", "feature_names", "name_list", "recorded_columns"]

BY_POSITION = "by position"
"""What a result records when its columns were taken by position, not by name."""

SHOWN = 8  # names quoted in a message


def name_list(names: Sequence[str]) -> str:
    """A few names for a message."""
    shown = ", ".join(map(repr, names[:SHOWN]))
    return shown + (f" ... ({len(names)} in all)" if len(names) > SHOWN else "")


def feature_names(description: dict[str, Any]) -> list[str] | None:
    """The model's feature names in order, as its description gives them; None: it takes columns by position."""
    names = description.get("feature_names")
    if names is None:
        return None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise InvalidRequest("the model's description has unreadable feature_names (not distinct strings)", code="invalid_response")
    return names


def choose_columns(
    available: list[str] | None, names: list[str] | None, requested: list[str] | None, where: str
) -> tuple[list[str] | None, bool]:
    """Which of `where`'s columns (`available`, None when it has no names) feed the model, in order, and
    whether they were chosen by name. `requested`: the columns the user named (None: all of them)."""
    if available is not None:
        twice = sorted({name for name in available if available.count(name) > 1})
        if twice:
            raise InvalidRequest(f"{where} has columns named twice: {name_list(twice)}", code="wrong_features")
    if requested is not None:
        if available is None:
            raise InvalidRequest(f"{where} has no column names to choose from (columns are taken by position)", code="wrong_features")
        absent = [name for name in requested if name not in available]
        if absent:
            raise InvalidRequest(f"{where} has no column {name_list(absent)}; it has: {name_list(available)}", code="wrong_features")
        available = list(requested)
    if names is None or available is None:
        return available, False
    missing = [name for name in names if name not in available]
    unknown = [name for name in available if name not in names]
    if missing or unknown:
        parts = ([f"missing {name_list(missing)}"] if missing else []) + ([f"unknown {name_list(unknown)}"] if unknown else [])
        raise InvalidRequest(
            f"{where}'s columns are not the model's {len(names)} features ({'; '.join(parts)}); "
            f"the model takes: {name_list(names)}",
            code="wrong_features",
        )
    return list(names), True


def columns_label(chosen: Sequence[str] | None) -> str:
    """How rows' columns fed the model, as every summary says it: "by name: a, b, ..." (`chosen`: the
    model's names, in its order) or BY_POSITION (None)."""
    return BY_POSITION if chosen is None else "by name: " + ", ".join(chosen)


def recorded_columns(recorded: list[str] | None, names: list[str] | None, where: str) -> list[str] | None:
    """The columns by whose names a job's rows fed the model, from the columns its manifest records
    (`recorded`) and the model's `names`; None: by position. A job whose recorded columns are not the
    model's names is refused (it was encrypted for another column order)."""
    if names is None or recorded is None:
        return None
    if recorded != names:
        raise InvalidRequest(
            f"{where} was encrypted with the columns {name_list(recorded)}; the model takes {name_list(names)} "
            "in that order: encrypt it again with this model's description",
            code="wrong_features",
        )
    return names
