"""Composition of a generator and a classifier into one network C∘G."""

from __future__ import annotations


def compose(generator, classifier, between=None):
    """Placeholder: implemented by the loaders work."""
    raise NotImplementedError
