"""Global robustness of a classifier over a generative model (Fijalkow and Gupta, 2019).

- :mod:`.latent`: seeded N(0, I) latent samples, identical on CPU and CUDA.
- :mod:`.intervals`: Clopper-Pearson intervals, widened by unknowns, error spending for
  sequential looks, the stratified estimate from a subsample of unknowns.
- :mod:`.correctness`: global correctness P(C(G(z)) = c), batched, and the paper's table.
- :mod:`.cascade`: per-sample decision of the local property on C∘G (bounds, attack,
  input splitting, exact MILP): certified, violated or unknown.
- :mod:`.sampler`: (eps, delta)-global robustness by Monte Carlo over the cascade, resumable.
- :mod:`.realistic`: the paper's black-box and white-box searches for realistic adversarial
  pairs, and the latent random walk; :mod:`.pictures` draws them.
- :mod:`.cli`: the ``global-robustness`` and ``global-correctness`` commands.
"""
