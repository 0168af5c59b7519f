"""Importable worker functions for tests/test_campaign.py (worker processes import them by name)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

#: Weights of a fixed 2-4-3 ReLU network (the "real engine" queries run exactverify.verify on it).
_W1 = [[1.0, -0.5], [0.3, 0.8], [-0.7, 0.2], [0.5, 0.5]]
_B1 = [0.1, -0.2, 0.05, 0.0]
_W2 = [[1.0, -0.3, 0.2, 0.4], [-0.2, 0.9, 0.1, -0.3], [0.3, 0.1, -0.8, 0.6]]
_B2 = [0.0, 0.05, -0.1]


def toy_value(query: dict) -> int:
    """The deterministic answer of :func:`toy` (computed independently in the tests)."""
    return (int(query["n"]) * 7919 + 13) % 1009


def toy(query: dict) -> dict:
    """Sleeps 0.1-0.3 s (by ``n``), returns a deterministic function of the query."""
    time.sleep(0.1 + 0.1 * (int(query["n"]) % 3))
    return {"status": "optimal" if query["n"] % 4 else "unknown", "value": toy_value(query),
            "lower": query["n"] / 10, "upper": query["n"] / 10 + 0.5,
            **({"threads": query["threads"]} if "threads" in query else {})}


def tiny_network():
    from exactverify import ir

    return ir.Network((2,), (ir.Dense(np.array(_W1), np.array(_B1)), ir.ReLU(), ir.Dense(np.array(_W2), np.array(_B2))),
                      (np.zeros(2), np.ones(2)), "campaign_tiny")


def real_verify(query: dict) -> dict:
    """``exactverify.verify`` on the fixed tiny network; returns the verdict's stable fields."""
    import exactverify as ev

    verdict = ev.verify(tiny_network(), np.asarray(query["x"], dtype=np.float64), query["eps"],
                        norm=query.get("norm", "linf"), time_limit=query.get("time_limit"))
    return {"status": verdict.status.value, "label": verdict.label, "validated": verdict.validated}


def mixed(query: dict) -> dict:
    """Dispatch on ``kind``: toy, verify, sleep (ignores its time limit), raise, die."""
    kind = query.get("kind", "toy")
    if kind == "toy":
        return toy(query)
    if kind == "verify":
        return real_verify(query)
    if kind == "sleep":
        if "pidfile" in query:  # tells the test which process to signal
            with open(query["pidfile"], "w") as handle:
                handle.write(str(os.getpid()))
        time.sleep(query["sleep"])
        return {"status": "slept"}
    if kind == "raise":
        raise ValueError(f"bad query {query['n']}")
    if kind == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "not_dict":
        return [1, 2]
    raise ValueError(f"unknown kind {kind!r}")
