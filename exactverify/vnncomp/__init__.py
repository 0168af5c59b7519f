"""VNN-COMP interoperability: VNNLIB properties, the instance solver and the result file format.

:func:`read_vnnlib` turns a property into input boxes with output specs;
:func:`solve_instance` decides an (ONNX, VNNLIB) instance under a timeout with a
cascade of attack, CROWN and input-splitting branch and bound with a MILP fallback,
re-checking every counterexample on the ONNX file with onnxruntime.
"""

from .vnnlib import SubProblem, VnnlibProperty, parse_vnnlib, read_vnnlib

__all__ = ["SubProblem", "VnnlibProperty", "parse_vnnlib", "read_vnnlib"]
