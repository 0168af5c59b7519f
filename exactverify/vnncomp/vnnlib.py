"""Reader of VNNLIB properties (the SMT-LIB subset of VNN-COMP) into boxes and output specs.

A VNNLIB file states the *unsafe* set: ``(declare-const X_i Real)`` inputs and
``(declare-const Y_j Real)`` outputs, and ``(assert F)`` formulas built from ``and``,
``or`` and linear comparisons (``<=``, ``>=``, ``<``, ``>``, ``=``) of terms made of
numbers, variables, ``+``, ``-`` and ``*`` by a constant. The conjunction of all asserts
is put in disjunctive normal form; each term must bound every input by constants
(a box) and may constrain the outputs by linear inequalities. Terms with the same box
are grouped, so a property becomes a few :class:`SubProblem` (box, :class:`OutputSpec`):
it is violated ("sat") iff some sub-problem has an input of its box mapped into its spec.

Strict comparisons are read as their closures (``<`` as ``<=``): the competition treats
them alike, and on the boundary the difference is below float32 rounding anyway.
Inputs and outputs are indexed over the *flattened* network input/output (row-major).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import InvalidInputError
from ..specs import Conjunction, OutputSpec

#: Largest number of terms of the disjunctive normal form before the reader gives up
#: (a product of many ``or``s explodes; the competition's files stay far below this).
MAX_DNF_TERMS = 100_000

_VARIABLE = re.compile(r"^([XY])_(\d+)$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_COMPARISONS = ("<=", ">=", "<", ">", "=")


class Token(NamedTuple):
    text: str
    line: int


class SExpr(NamedTuple):
    """A parenthesised list (``items``) or an atom (``atom``), with the line it starts on."""

    line: int
    atom: str | None = None
    items: tuple = ()

    def describe(self) -> str:
        if self.atom is not None:
            return self.atom
        inner = " ".join(item.describe() for item in self.items[:4])
        return f"({inner}{' ...' if len(self.items) > 4 else ''})"


@dataclass(frozen=True)
class SubProblem:
    """Inputs in the box ``lower <= x <= upper`` (flat) mapped into ``spec`` violate the property."""

    lower: np.ndarray
    upper: np.ndarray
    spec: OutputSpec


@dataclass(frozen=True)
class VnnlibProperty:
    """A parsed VNNLIB file: the property is violated iff some sub-problem is reachable."""

    num_inputs: int
    num_outputs: int
    subproblems: tuple[SubProblem, ...]
    source: str = ""


# ------------------------------------------------------------------ tokens and s-expressions
def tokenize(text: str) -> list[Token]:
    """Parentheses and atoms with their line numbers; ``;`` starts a comment to the line end."""
    tokens: list[Token] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split(";", 1)[0]
        for piece in re.findall(r"\(|\)|[^\s()]+", line):
            tokens.append(Token(piece, number))
    return tokens


def parse_sexprs(text: str, source: str = "vnnlib") -> list[SExpr]:
    """The top-level s-expressions of ``text``; unbalanced parentheses are an error."""
    stack: list[tuple[int, list[SExpr]]] = [(0, [])]
    for token in tokenize(text):
        if token.text == "(":
            stack.append((token.line, []))
        elif token.text == ")":
            if len(stack) == 1:
                raise InvalidInputError(f"{source}:{token.line}: unexpected ')'")
            line, items = stack.pop()
            stack[-1][1].append(SExpr(line, items=tuple(items)))
        else:
            stack[-1][1].append(SExpr(token.line, atom=token.text))
    if len(stack) != 1:
        raise InvalidInputError(f"{source}:{stack[-1][0]}: '(' opened here is never closed")
    return stack[0][1]


# ------------------------------------------------------------------ linear terms
class _Linear:
    """``sum coef[var] * var + const`` with variables named ``("X", i)`` / ``("Y", j)``."""

    def __init__(self, coef: dict | None = None, const: float = 0.0) -> None:
        self.coef = dict(coef or {})
        self.const = float(const)

    def scaled(self, factor: float) -> _Linear:
        return _Linear({k: v * factor for k, v in self.coef.items()}, self.const * factor)

    def plus(self, other: _Linear) -> _Linear:
        coef = dict(self.coef)
        for key, value in other.coef.items():
            coef[key] = coef.get(key, 0.0) + value
        return _Linear(coef, self.const + other.const)

    @property
    def variables(self) -> dict:
        return {k: v for k, v in self.coef.items() if v != 0.0}


class _Reader:
    """Turns s-expressions into declarations and DNF terms; errors name file, line, construct."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.declared: dict[tuple[str, int], int] = {}
        self.terms: list[list[tuple[_Linear, int]]] = [[]]  # DNF of all asserts: atoms "expr <= 0"

    def error(self, node: SExpr, message: str) -> InvalidInputError:
        return InvalidInputError(f"{self.source}:{node.line}: {message} in {node.describe()}")

    def command(self, node: SExpr) -> None:
        if node.atom is not None or not node.items or node.items[0].atom is None:
            raise self.error(node, "expected a command like (declare-const ...) or (assert ...)")
        head = node.items[0].atom
        if head == "declare-const":
            self.declare(node)
        elif head == "assert":
            if len(node.items) != 2:
                raise self.error(node, "assert takes exactly one formula")
            self.conjoin(self.formula(node.items[1]))
        elif head in ("check-sat", "get-model", "exit", "set-logic", "set-info"):
            return  # solver directives carry no constraint
        else:
            raise self.error(node, f"unknown command {head!r} (only declare-const and assert are read)")

    def declare(self, node: SExpr) -> None:
        if len(node.items) != 3 or node.items[1].atom is None or node.items[2].atom is None:
            raise self.error(node, "declare-const needs a name and a sort")
        name, sort = node.items[1].atom, node.items[2].atom
        match = _VARIABLE.match(name)
        if match is None:
            raise self.error(node, f"variable {name!r} is not named X_<i> (input) or Y_<j> (output)")
        if sort != "Real":
            raise self.error(node, f"variable {name} has sort {sort!r}; only Real is supported")
        key = (match.group(1), int(match.group(2)))
        if key in self.declared:
            raise self.error(node, f"variable {name} is declared twice (first on line {self.declared[key]})")
        self.declared[key] = node.line

    # formulas become DNF: a list of terms, each a list of atoms (expr <= 0, line)
    def formula(self, node: SExpr) -> list[list[tuple[_Linear, int]]]:
        if node.atom is not None:
            raise self.error(node, f"expected a formula, got the atom {node.atom!r}")
        if not node.items or node.items[0].atom is None:
            raise self.error(node, "a formula must start with an operator")
        head, args = node.items[0].atom, node.items[1:]
        if head == "and":
            result: list[list[tuple[_Linear, int]]] = [[]]
            for arg in args:
                result = self._product(result, self.formula(arg), arg)
            return result
        if head == "or":
            if not args:
                raise self.error(node, "'or' needs at least one argument")
            result = []
            for arg in args:
                result.extend(self.formula(arg))
                if len(result) > MAX_DNF_TERMS:
                    raise self.error(node, f"the disjunctive normal form exceeds {MAX_DNF_TERMS} terms")
            return result
        if head in _COMPARISONS:
            if len(args) != 2:
                raise self.error(node, f"{head!r} takes exactly two terms")
            left, right = self.term(args[0]), self.term(args[1])
            if head in ("<=", "<"):
                return [[(left.plus(right.scaled(-1.0)), node.line)]]
            if head in (">=", ">"):
                return [[(right.plus(left.scaled(-1.0)), node.line)]]
            difference = left.plus(right.scaled(-1.0))
            return [[(difference, node.line), (difference.scaled(-1.0), node.line)]]
        raise self.error(node, f"unknown operator {head!r} (expected and, or, <=, >=, <, >, =)")

    def _product(self, left, right, node: SExpr):
        if len(left) * len(right) > MAX_DNF_TERMS:
            raise self.error(node, f"the disjunctive normal form exceeds {MAX_DNF_TERMS} terms")
        return [a + b for a in left for b in right]

    def conjoin(self, dnf) -> None:
        if len(dnf) == 1:  # the common case (one bound per assert): extend in place, linear time
            for term in self.terms:
                term.extend(dnf[0])
            return
        if len(self.terms) * len(dnf) > MAX_DNF_TERMS:
            raise InvalidInputError(f"{self.source}: the disjunctive normal form exceeds {MAX_DNF_TERMS} terms")
        self.terms = [a + b for a in self.terms for b in dnf]

    def term(self, node: SExpr) -> _Linear:
        if node.atom is not None:
            text = node.atom
            if _NUMBER.match(text):
                return _Linear(const=float(text))
            match = _VARIABLE.match(text)
            if match is None:
                raise self.error(node, f"unknown symbol {text!r} (not a number or an X_i/Y_j variable)")
            key = (match.group(1), int(match.group(2)))
            if key not in self.declared:
                raise self.error(node, f"variable {text} is used but never declared")
            return _Linear({key: 1.0})
        if not node.items or node.items[0].atom is None:
            raise self.error(node, "a term must be a number, a variable or (op ...)")
        head, args = node.items[0].atom, [self.term(arg) for arg in node.items[1:]]
        if not args:
            raise self.error(node, f"{head!r} needs at least one argument")
        if head == "+":
            total = _Linear()
            for arg in args:
                total = total.plus(arg)
            return total
        if head == "-":
            if len(args) == 1:
                return args[0].scaled(-1.0)
            total = args[0]
            for arg in args[1:]:
                total = total.plus(arg.scaled(-1.0))
            return total
        if head == "*":
            product = _Linear(const=1.0)
            for arg in args:
                if arg.variables and product.variables:
                    raise self.error(node, "non-linear term (a product of two variables)")
                product = arg.scaled(product.const) if arg.variables else product.scaled(arg.const)
            return product
        raise self.error(node, f"unknown operator {head!r} in a term (expected +, -, *)")


def _count(declared: dict, kind: str, source: str) -> int:
    indices = sorted(i for k, i in declared if k == kind)
    if indices != list(range(len(indices))):
        missing = sorted(set(range(max(indices, default=-1) + 1)) - set(indices))
        raise InvalidInputError(f"{source}: {kind} variables must be {kind}_0..{kind}_n-1; missing "
                                f"{', '.join(f'{kind}_{i}' for i in missing[:5])}")
    return len(indices)


def _subproblem(term, num_inputs: int, num_outputs: int, source: str):
    """(lower, upper, A, b) of one DNF term, or None when its constants make it empty."""
    lower = np.full(num_inputs, -np.inf)
    upper = np.full(num_inputs, np.inf)
    rows, rhs = [], []
    for expr, line in term:
        variables = expr.variables
        kinds = {kind for kind, _ in variables}
        if not variables:
            if expr.const > 0:
                return None  # a false constant comparison: this term is empty
            continue
        if kinds == {"X", "Y"}:
            raise InvalidInputError(f"{source}:{line}: a constraint mixes inputs and outputs; only input boxes "
                                    "and output constraints are supported")
        if kinds == {"X"}:
            if len(variables) != 1:
                raise InvalidInputError(f"{source}:{line}: a constraint couples several inputs; only input "
                                        "boxes (one input per bound) are supported")
            [((_, index), coef)] = variables.items()
            value = -expr.const / coef  # coef * x + const <= 0
            if coef > 0:
                upper[index] = min(upper[index], value)
            else:
                lower[index] = max(lower[index], value)
            continue
        row = np.zeros(num_outputs)
        for (_, index), coef in variables.items():
            row[index] += coef
        rows.append(row)
        rhs.append(-expr.const)
    unbounded = [i for i in range(num_inputs) if not (np.isfinite(lower[i]) and np.isfinite(upper[i]))]
    if unbounded:
        raise InvalidInputError(f"{source}: input X_{unbounded[0]} is unbounded (every input needs a lower and an "
                                f"upper bound in every disjunct; {len(unbounded)} input(s) lack one)")
    if np.any(lower > upper):
        return None
    return lower, upper, np.array(rows).reshape(len(rows), num_outputs), np.array(rhs)


def parse_vnnlib(text: str, source: str = "vnnlib") -> VnnlibProperty:
    """Parse VNNLIB ``text`` (``source`` names it in error messages); see the module docstring."""
    reader = _Reader(source)
    for node in parse_sexprs(text, source):
        reader.command(node)
    num_inputs = _count(reader.declared, "X", source)
    num_outputs = _count(reader.declared, "Y", source)
    if num_inputs == 0 or num_outputs == 0:
        raise InvalidInputError(f"{source}: declares {num_inputs} inputs and {num_outputs} outputs; needs both")
    groups: dict[tuple[bytes, bytes], list] = {}
    for term in reader.terms:
        part = _subproblem(term, num_inputs, num_outputs, source)
        if part is None:
            continue
        lower, upper, A, b = part
        groups.setdefault((lower.tobytes(), upper.tobytes()), [lower, upper, []])[2].append(Conjunction(A, b))
    if not groups:
        raise InvalidInputError(f"{source}: the constraints are contradictory (every disjunct is empty); "
                                "the property holds trivially but is most likely malformed")
    subproblems = tuple(SubProblem(low, up, OutputSpec(tuple(conjs), num_outputs, f"{source} unsafe set"))
                        for low, up, conjs in groups.values())
    for sub in subproblems:
        sub.lower.setflags(write=False)
        sub.upper.setflags(write=False)
    return VnnlibProperty(num_inputs, num_outputs, subproblems, source)


def read_vnnlib(path: str | Path) -> VnnlibProperty:
    """Parse the VNNLIB file at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"vnnlib path {str(path)!r} is not a file")
    return parse_vnnlib(path.read_text(), source=path.name)
