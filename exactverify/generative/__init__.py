"""Generators and classifiers for global robustness over a generative model (Fijalkow and Gupta, 2019).

- :mod:`.models`: architectures (plain nn.Sequential, exactly encodable) and loaders.
- :mod:`.training`: GAN and classifier training, quality numbers.
- :mod:`.augment`: random rotation / shear / shift of digit images.
"""

from .models import (
    CAPACITIES,
    GENERATOR_WIDTHS,
    LATENT_DIM,
    classifier_info,
    classifier_mlp,
    generator_info,
    generator_mlp,
    load_classifier,
    load_generator,
)

__all__ = [
    "CAPACITIES",
    "GENERATOR_WIDTHS",
    "LATENT_DIM",
    "classifier_info",
    "classifier_mlp",
    "generator_info",
    "generator_mlp",
    "load_classifier",
    "load_generator",
]
