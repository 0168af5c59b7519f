"""SMT encodings over exact rationals with z3 (tiny networks only).

Every float64 weight, bias, bound and threshold becomes the exact rational it denotes
(``fractions.Fraction(float)``), so a z3 verdict is exact for the float64 network as
written, up to the phase fixing below. z3 is imported lazily: importing
``encoders.milp`` or ``encoders`` never imports it.

Phase fixing: a ReLU whose float bounds show it stable by at least :data:`PHASE_MARGIN`
is encoded as the identity or as zero; every other unit is an ``If``. The bounds come
from float64 arithmetic and can be off by rounding (about 1e-15 of the magnitudes
involved), which the margin absorbs on the tiny networks this encoder is meant for.
"""

from .encode import PHASE_MARGIN, SmtEncoding, encode_smt, solve_smt

__all__ = ["PHASE_MARGIN", "SmtEncoding", "encode_smt", "solve_smt"]
