"""scalingModifiers formulas: the part of expr-lang (github.com/expr-lang/expr) that KEDA users write.

Numbers, trigger names, `+ - * / % ** ^`, unary `- +`, comparisons (`a < b < c` chains as in expr),
`&& || and or ! not`, `c ? a : b`, `a ?? b`, `nil`, `true`, `false`, parentheses and the functions min, max,
abs, ceil, floor, round, float, int. Parsed with lark, evaluated by walking the tree (never Python's eval).
Precedence follows expr's parser/operator table; like expr, `??` cannot be followed by another binary
operator without parentheses.

Runtime behaviour follows expr where KEDA relies on it: a trigger with no value is nil, `nil ?? x` is x, `/`
always gives a float. Where expr would silently produce Inf or NaN (division by zero, overflow) ebb raises a
`FormulaEvaluationError` instead: such a value would only be turned into a meaningless replica count.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from ebb.errors import EbbError, FormulaError

FORMULA_FIELD = "spec.advanced.scalingModifiers.formula"

Value = int | float | bool | None

_GRAMMAR = r"""
?start: ternary

?ternary: or_expr
    | or_expr "?" ternary ":" ternary -> cond

?or_expr: and_expr
    | or_expr "||" and_expr -> or_
    | or_expr "or" and_expr -> or_

?and_expr: cmp_expr
    | and_expr "&&" cmp_expr -> and_
    | and_expr "and" cmp_expr -> and_

?cmp_expr: add_expr
    | add_expr (CMP_OP add_expr)+ -> compare

?add_expr: not_expr
    | add_expr ADD_OP not_expr -> binary

?not_expr: mul_expr
    | "!" not_expr -> not_
    | "not" not_expr -> not_

?mul_expr: neg_expr
    | mul_expr MUL_OP neg_expr -> binary

?neg_expr: pow_expr
    | "-" neg_expr -> neg
    | "+" neg_expr -> pos

?pow_expr: coal_expr
    | coal_expr POW_OP neg_expr -> binary

?coal_expr: atom
    | coal_expr COALESCE atom -> binary

?atom: NUMBER -> number
    | "nil" -> nil
    | "true" -> true
    | "false" -> false
    | NAME "(" [ternary ("," ternary)*] ")" -> call
    | NAME -> name
    | "(" ternary ")" -> paren

CMP_OP: "==" | "!=" | "<=" | ">=" | "<" | ">"
ADD_OP: "+" | "-"
MUL_OP: "*" | "/" | "%"
POW_OP: "**" | "^"
COALESCE: "??"
NAME: /[A-Za-z_$][A-Za-z0-9_$]*/
NUMBER: /(\d[\d_]*(\.[\d_]*)?|\.\d[\d_]*)([eE][+-]?\d+)?/

%ignore /[ \t\r\n]+/
"""

_PARSER = Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)

_UNARY_FUNCS = ("abs", "ceil", "floor", "round", "float", "int")
_VARIADIC_FUNCS = ("min", "max")
FUNCTIONS = tuple(sorted(_UNARY_FUNCS + _VARIADIC_FUNCS))


class FormulaEvaluationError(EbbError):
    """A formula that compiled fails on this poll's values (nil in arithmetic, division by zero...)."""

    def __init__(self, obj: str, message: str) -> None:
        self.obj = obj
        self.field = FORMULA_FIELD
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.obj}: {self.field}: {self.message}"


class _Eval(Exception):
    """Raised while walking the tree; turned into FormulaEvaluationError with the object's name."""


# --- the tree ------------------------------------------------------------------------------------------


class _Node:
    def eval(self, env: Mapping[str, float | None]) -> Value:
        raise NotImplementedError


@dataclass(frozen=True)
class _Const(_Node):
    value: Value

    def eval(self, env: Mapping[str, float | None]) -> Value:
        return self.value


@dataclass(frozen=True)
class _Name(_Node):
    name: str

    def eval(self, env: Mapping[str, float | None]) -> Value:
        return env.get(self.name)


@dataclass(frozen=True)
class _Paren(_Node):
    inner: _Node

    def eval(self, env: Mapping[str, float | None]) -> Value:
        return self.inner.eval(env)


def _is_num(v: Value) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _type(v: Value) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    return "int" if isinstance(v, int) else "float64"


def _num(v: Value, what: str) -> int | float:
    if not _is_num(v):
        raise _Eval(f"{what} needs a number, got {_type(v)}")
    assert isinstance(v, int | float)
    return v


def _bool(v: Value, what: str) -> bool:
    if not isinstance(v, bool):
        raise _Eval(f"{what} needs a bool, got {_type(v)}")
    return v


@dataclass(frozen=True)
class _Unary(_Node):
    op: str
    operand: _Node

    def eval(self, env: Mapping[str, float | None]) -> Value:
        v = self.operand.eval(env)
        if self.op in ("!", "not"):
            return not _bool(v, f"operator {self.op!r}")
        n = _num(v, f"unary {self.op!r}")
        return -n if self.op == "-" else n


def _arith(op: str, a: Value, b: Value) -> Value:
    if not (_is_num(a) and _is_num(b)):
        raise _Eval(f"invalid operation: {_type(a)} {op} {_type(b)}")
    assert isinstance(a, int | float) and isinstance(b, int | float)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            raise _Eval("division by zero")
        return float(a) / float(b)
    if op == "%":
        if b == 0:
            raise _Eval("modulo by zero")
        if isinstance(a, int) and isinstance(b, int):
            r = abs(a) % abs(b)  # Go's remainder takes the sign of the dividend
            return -r if a < 0 else r
        return math.fmod(a, b)
    # ** and ^ are math.Pow in expr.
    try:
        return math.pow(float(a), float(b))
    except (ValueError, OverflowError, ZeroDivisionError) as exc:
        raise _Eval(f"{a} {op} {b}: {exc}") from None


@dataclass(frozen=True)
class _Binary(_Node):
    op: str
    left: _Node
    right: _Node

    def eval(self, env: Mapping[str, float | None]) -> Value:
        if self.op == "??":
            value = self.left.eval(env)
            return self.right.eval(env) if value is None else value
        return _arith(self.op, self.left.eval(env), self.right.eval(env))


@dataclass(frozen=True)
class _Logic(_Node):
    op: str  # "and" | "or"
    left: _Node
    right: _Node

    def eval(self, env: Mapping[str, float | None]) -> Value:
        left = _bool(self.left.eval(env), f"operator {self.op!r}")
        if self.op == "and" and not left:
            return False
        if self.op == "or" and left:
            return True
        return _bool(self.right.eval(env), f"operator {self.op!r}")


def _equal(a: Value, b: Value) -> bool:
    if _is_num(a) and _is_num(b):
        return a == b
    if isinstance(a, bool) and isinstance(b, bool):
        return a == b
    return a is None and b is None


@dataclass(frozen=True)
class _Compare(_Node):
    op: str
    left: _Node
    right: _Node

    def eval(self, env: Mapping[str, float | None]) -> Value:
        a, b = self.left.eval(env), self.right.eval(env)
        if self.op == "==":
            return _equal(a, b)
        if self.op == "!=":
            return not _equal(a, b)
        if not (_is_num(a) and _is_num(b)):
            raise _Eval(f"invalid operation: {_type(a)} {self.op} {_type(b)}")
        assert isinstance(a, int | float) and isinstance(b, int | float)
        if self.op == "<":
            return a < b
        if self.op == ">":
            return a > b
        if self.op == "<=":
            return a <= b
        return a >= b


@dataclass(frozen=True)
class _Cond(_Node):
    test: _Node
    then: _Node
    otherwise: _Node

    def eval(self, env: Mapping[str, float | None]) -> Value:
        if _bool(self.test.eval(env), "the condition of '? :'"):
            return self.then.eval(env)
        return self.otherwise.eval(env)


def _go_round(x: float) -> float:
    """math.Round: half away from zero, on the exact binary value."""
    if not math.isfinite(x):
        return x
    return float(Decimal(x).to_integral_value(rounding=ROUND_HALF_UP))


def _call_unary(name: str, v: Value) -> Value:
    if name == "float":
        return float(_num(v, "float()"))
    n = _num(v, f"{name}()")
    if name == "abs":
        return abs(n)
    if name == "ceil":
        return float(math.ceil(n)) if math.isfinite(n) else float(n)
    if name == "floor":
        return float(math.floor(n)) if math.isfinite(n) else float(n)
    if name == "round":
        return _go_round(float(n))
    # int(): Go's conversion truncates toward zero.
    if not math.isfinite(n):
        raise _Eval(f"int() of {n}")
    return math.trunc(n)


@dataclass(frozen=True)
class _Call(_Node):
    name: str
    args: tuple[_Node, ...]

    def eval(self, env: Mapping[str, float | None]) -> Value:
        values = [a.eval(env) for a in self.args]
        if self.name in _VARIADIC_FUNCS:
            nums = [_num(v, f"{self.name}()") for v in values]
            pick = max if self.name == "max" else min
            return pick(nums)
        return _call_unary(self.name, values[0])


# --- compiling --------------------------------------------------------------------------------------------


class _Problem(Exception):
    """A semantic problem found while building the tree (unknown name, bad call)."""


def _where(token: Token) -> str:
    return f"line {token.line}, column {token.column}"


def _refuse_mixed_coalesce(left: _Node, op: str, where: str) -> None:
    """expr refuses `a ?? b + c`: after a `??`, another binary operator needs parentheses."""
    if isinstance(left, _Binary) and left.op == "??":
        raise _Problem(
            f"operator {op!r} and coalesce expressions (??) cannot be mixed{where}; wrap either in parentheses"
        )


@v_args(inline=True)
class _Builder(Transformer[Token, _Node]):
    def __init__(self, names: Collection[str]) -> None:
        super().__init__()
        self.names = set(names)
        self.used: set[str] = set()

    def number(self, tok: Token) -> _Node:
        text = tok.value.replace("_", "")
        if any(c in text for c in ".eE"):
            return _Const(float(text))
        return _Const(int(text))

    def nil(self) -> _Node:
        return _Const(None)

    def true(self) -> _Node:
        return _Const(True)

    def false(self) -> _Node:
        return _Const(False)

    def name(self, tok: Token) -> _Node:
        if tok.value not in self.names:
            known = ", ".join(sorted(self.names)) or "none (only triggers with a `name` can be used)"
            raise _Problem(f"unknown name {tok.value!r} at {_where(tok)}; known trigger names: {known}")
        self.used.add(tok.value)
        return _Name(tok.value)

    def paren(self, inner: _Node) -> _Node:
        return _Paren(inner)

    def call(self, tok: Token, *args: _Node | None) -> _Node:
        arguments = tuple(a for a in args if a is not None)
        if tok.value not in FUNCTIONS:
            raise _Problem(f"unknown function {tok.value!r} at {_where(tok)}; available: {', '.join(FUNCTIONS)}")
        if tok.value in _UNARY_FUNCS and len(arguments) != 1:
            raise _Problem(f"{tok.value}() takes exactly 1 argument, got {len(arguments)} at {_where(tok)}")
        if tok.value in _VARIADIC_FUNCS and not arguments:
            raise _Problem(f"{tok.value}() needs at least 1 argument at {_where(tok)}")
        return _Call(tok.value, arguments)

    def neg(self, operand: _Node) -> _Node:
        return _Unary("-", operand)

    def pos(self, operand: _Node) -> _Node:
        return _Unary("+", operand)

    def not_(self, operand: _Node) -> _Node:
        return _Unary("!", operand)

    def binary(self, left: _Node, op: Token, right: _Node) -> _Node:
        if op.value != "??":
            _refuse_mixed_coalesce(left, op.value, f" at {_where(op)}")
        return _Binary(op.value, left, right)

    def and_(self, left: _Node, right: _Node) -> _Node:
        _refuse_mixed_coalesce(left, "&&", "")
        return _Logic("and", left, right)

    def or_(self, left: _Node, right: _Node) -> _Node:
        _refuse_mixed_coalesce(left, "||", "")
        return _Logic("or", left, right)

    def cond(self, test: _Node, then: _Node, otherwise: _Node) -> _Node:
        return _Cond(test, then, otherwise)

    def compare(self, first: _Node, *rest: _Node | Token) -> _Node:
        # expr: relational operators chain (a < b < c is a < b && b < c); == and != do not.
        node, left = first, first
        chaining = False
        for i in range(0, len(rest), 2):
            op, right = rest[i], rest[i + 1]
            assert isinstance(op, Token) and isinstance(right, _Node)
            if node is first:
                _refuse_mixed_coalesce(first, op.value, f" at {_where(op)}")
            relational = op.value in ("<", ">", "<=", ">=")
            cmp = _Compare(op.value, left if chaining and relational else node, right)
            node = _Logic("and", node, cmp) if chaining and relational else cmp
            chaining = relational
            left = right
        return node


def _syntax_message(exc: UnexpectedInput) -> str:
    where = f"line {exc.line}, column {exc.column}"
    if isinstance(exc, UnexpectedCharacters):
        return f"syntax error at {where}: unexpected character {exc.char!r}"
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        return "syntax error: the formula ends too early (an operand or a closing parenthesis is missing)"
    if isinstance(exc, UnexpectedToken):
        return f"syntax error at {where}: unexpected {exc.token.value!r}"
    return f"syntax error at {where}"


@dataclass(frozen=True)
class Formula:
    """A compiled formula. `names` are the trigger names it refers to."""

    text: str
    names: frozenset[str]
    _root: _Node
    obj: str = "ScaledObject ?"

    def evaluate(self, values: Mapping[str, float | None]) -> float | None:
        """The formula's value as a float, or None when it evaluates to nil (KEDA then uses fallback)."""
        try:
            result = self._root.eval(values)
        except _Eval as exc:
            raise FormulaEvaluationError(self.obj, str(exc)) from None
        except RecursionError:
            raise FormulaEvaluationError(self.obj, "formula too deeply nested") from None
        if result is None:
            return None
        if not _is_num(result):
            raise FormulaEvaluationError(self.obj, f"formula returned a non-numeric result ({_type(result)})")
        assert isinstance(result, int | float)
        try:
            out = float(result)
        except OverflowError:
            raise FormulaEvaluationError(self.obj, "formula result is too large") from None
        if not math.isfinite(out):
            raise FormulaEvaluationError(self.obj, f"formula result is not a finite number ({out})")
        return out


def compile_formula(formula: str, trigger_names: Collection[str], obj: str = "ScaledObject ?") -> Formula:
    """Parse `formula` and check every name it uses is one of `trigger_names`. Raises FormulaError."""
    if not formula.strip():
        raise FormulaError(obj, FORMULA_FIELD, "the formula is empty")
    try:
        tree = _PARSER.parse(formula)
    except UnexpectedInput as exc:
        raise FormulaError(obj, FORMULA_FIELD, _syntax_message(exc)) from None
    builder = _Builder(trigger_names)
    try:
        root = builder.transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, _Problem):
            raise FormulaError(obj, FORMULA_FIELD, str(exc.orig_exc)) from None
        raise
    except _Problem as exc:  # pragma: no cover - lark wraps transformer errors, kept for safety
        raise FormulaError(obj, FORMULA_FIELD, str(exc)) from None
    return Formula(formula, frozenset(builder.used), root, obj)


__all__: list[str] = [
    "FUNCTIONS",
    "Formula",
    "FormulaError",
    "FormulaEvaluationError",
    "compile_formula",
]
