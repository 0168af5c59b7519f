"""Global robustness of a classifier over a generative model (Fijalkow and Gupta, 2019).

- :mod:`.latent`: seeded N(0, I) latent samples.
- :mod:`.intervals`: Clopper-Pearson intervals, widened by unknowns, for sequential looks.
"""
