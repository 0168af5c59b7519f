"""Built-in campaign workers for the exact queries (``exactverify.campaign.tasks:distortion``).

A query names a model (``"model"``: ``"digits"``, ``"mnist"`` or an .onnx/.nnet path), a
point (``"x"``: nested list, or ``"digits_index"``: a test image of the bundled digits),
and the keyword arguments of the query (``norm``, ``target``, ``label``, ``domain``,
``method``, ``tol``, ``backend``, ``bounds_method``, ``eps``, ``threads``; the campaign adds
``time_limit`` and its run options, such as ``threads``; any other key is refused, see
:func:`check_query`). Networks are loaded once per worker process.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import InvalidInputError

_OPTIONS = ("norm", "target", "label", "backend", "bounds_method", "time_limit", "threads")
_COMMON_KEYS = ("id", "model", "x", "digits_index", "domain", *_OPTIONS)
#: The keys a query of each built-in task may hold; any other key (a misspelled "target")
#: would be ignored and the query run as another one, so it is refused.
QUERY_KEYS = {"distortion": (*_COMMON_KEYS, "method", "tol"), "verify": (*_COMMON_KEYS, "eps")}


def check_query(query, task: str, where: str = "query") -> None:
    """Refuse a ``task`` query with keys the task does not read; ``where`` names it in errors."""
    if task not in QUERY_KEYS:
        raise InvalidInputError(f"task must be one of {sorted(QUERY_KEYS)}, got {task!r}")
    if not isinstance(query, dict):
        raise InvalidInputError(f"{where} must be a JSON object, got {type(query).__name__}")
    unknown = [key for key in query if key not in QUERY_KEYS[task]]
    if unknown:
        raise InvalidInputError(f"{where} has unknown key(s) {', '.join(map(repr, unknown))} for a {task} query; "
                                f"valid keys: {', '.join(QUERY_KEYS[task])}")


@lru_cache(maxsize=4)
def _model(name: str):
    """:func:`~exactverify.zoo.resolve_model`, loaded once per worker process."""
    from ..zoo import resolve_model

    return resolve_model(name)


@lru_cache(maxsize=1)
def _digits_test_images() -> np.ndarray:
    from ..zoo import load_digits_data

    return load_digits_data()[2]


def _arguments(query: dict):
    if "model" not in query:
        raise InvalidInputError("a campaign query needs 'model' (built-in name or model path)")
    network, module, domain = _model(str(query["model"]))
    if "x" in query:
        x = np.asarray(query["x"], dtype=np.float64)
    elif "digits_index" in query:
        images, index = _digits_test_images(), query["digits_index"]
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(images):
            raise InvalidInputError(f"'digits_index' must be an int in 0..{len(images) - 1}, got {index!r}")
        x = images[index]
    else:
        raise InvalidInputError("a campaign query needs 'x' (the input point) or 'digits_index'")
    options = {key: query[key] for key in _OPTIONS if key in query}
    options["domain"] = tuple(query["domain"]) if query.get("domain") is not None else domain
    options["model"] = module
    return network, x, options


def distortion(query: dict) -> dict:
    """:func:`exactverify.minimal_distortion` on the query; its result without the history."""
    from ..queries import minimal_distortion

    check_query(query, "distortion")
    network, x, options = _arguments(query)
    for key in ("method", "tol"):
        if key in query:
            options[key] = query[key]
    result = minimal_distortion(network, x, **options)
    row = result.to_dict()
    row["solver_calls"] = len(row.pop("history"))
    return row


def verify(query: dict) -> dict:
    """:func:`exactverify.verify` at ``query["eps"]``; its verdict without the history."""
    from ..queries import verify as verify_query

    check_query(query, "verify")
    if "eps" not in query:
        raise InvalidInputError("a verify query needs 'eps'")
    network, x, options = _arguments(query)
    verdict = verify_query(network, x, query["eps"], **options)
    row = verdict.to_dict()
    row["solver_calls"] = len(row.pop("history"))
    return row
