"""scalingModifiers formulas: the part of expr-lang (github.com/expr-lang/expr) that KEDA users write.

Numbers, trigger names, `+ - * / % ** ^`, unary `- +`, comparisons (`a < b < c` chains as in expr),
`&& || and or ! not`, `c ? a : b`, `a ?? b`, `nil`, `true`, `false`, parentheses, array literals `[a, b]`,
`x in [..]` / `x not in [..]`, the functions min, max, abs, ceil, floor, round, float, int, len, first, last,
mean, median, and the predicate functions all, any, none, one, count, filter, map, sum whose second argument
is a predicate (`{# > 1}`, braces optional as in expr) where `#` is the element and `#index` its index.
Parsed with lark, evaluated by walking the tree (never Python's eval). Precedence follows expr's
parser/operator table; like expr, `??` cannot be followed by another binary operator without parentheses.

Runtime behaviour follows expr where KEDA relies on it: a trigger with no value is nil, `nil ?? x` is x, `/`
always gives a float, min/max/mean/median flatten nested arrays and refuse nil. Where expr would silently
produce Inf or NaN (division by zero, overflow) ebb raises a `FormulaEvaluationError` instead: such a value
would only be turned into a meaningless replica count. A formula must give a number or nil: an array result
is refused at compile time when it is certain, otherwise when evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from ebb.errors import EbbError, FormulaError

FORMULA_FIELD = "spec.advanced.scalingModifiers.formula"

Value = int | float | bool | None | tuple["Value", ...]

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
    | add_expr (cmp_op add_expr)+ -> compare

!cmp_op: CMP_OP | "in" | "not" "in"

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
    | NAME "(" [_args] ")" -> call
    | NAME -> name
    | POINTER -> pointer
    | "[" [_items] "]" -> array
    | "(" ternary ")" -> paren

_args: arg ("," arg)* [","]
?arg: ternary
    | "{" ternary "}" -> closure
_items: ternary ("," ternary)* [","]

CMP_OP: "==" | "!=" | "<=" | ">=" | "<" | ">"
ADD_OP: "+" | "-"
MUL_OP: "*" | "/" | "%"
POW_OP: "**" | "^"
COALESCE: "??"
NAME: /[A-Za-z_$][A-Za-z0-9_$]*/
POINTER: /#([A-Za-z_][A-Za-z0-9_]*)?/
NUMBER: /(\d[\d_]*(\.[\d_]*)?|\.\d[\d_]*)([eE][+-]?\d+)?/

%ignore /[ \t\r\n]+/
"""

_PARSER = Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)

_UNARY_FUNCS = ("abs", "ceil", "floor", "round", "float", "int")
_AGGREGATE_FUNCS = ("min", "max", "mean", "median")  # numbers and/or arrays of numbers, flattened
_ARRAY_FUNCS = ("len", "first", "last")  # exactly one array argument
_PREDICATE_FUNCS = ("all", "any", "none", "one", "filter", "map", "count", "sum")
_OPTIONAL_PREDICATE = ("count", "sum")
FUNCTIONS = tuple(sorted(_UNARY_FUNCS + _AGGREGATE_FUNCS + _ARRAY_FUNCS + _PREDICATE_FUNCS))
_POINTERS = ("", "index")  # `#` and `#index`; expr's `#acc` only exists in reduce, which ebb does not have

# What a node is known to produce before any value is seen: enough to refuse `count(a, {# > 1})` (a trigger is
# never an array) or `[a, b] + 1` when compiling, as expr's type checker does.
_ARRAY, _SCALAR, _ANY = "array", "scalar", "any"


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


@dataclass(frozen=True)
class _Ctx:
    """The trigger values, and inside a predicate the current element (`#`) and its index (`#index`)."""

    values: Mapping[str, float | None]
    item: Value = None
    index: int = 0


# --- the tree ------------------------------------------------------------------------------------------


class _Node:
    def kind(self) -> str:
        return _ANY

    def eval(self, ctx: _Ctx) -> Value:
        raise NotImplementedError


@dataclass(frozen=True)
class _Const(_Node):
    value: Value

    def kind(self) -> str:
        return _SCALAR

    def eval(self, ctx: _Ctx) -> Value:
        return self.value


@dataclass(frozen=True)
class _Name(_Node):
    name: str

    def kind(self) -> str:
        return _SCALAR

    def eval(self, ctx: _Ctx) -> Value:
        return ctx.values.get(self.name)


@dataclass(frozen=True)
class _Pointer(_Node):
    name: str  # "" for `#`, "index" for `#index`

    def kind(self) -> str:
        return _SCALAR if self.name == "index" else _ANY

    def eval(self, ctx: _Ctx) -> Value:
        return ctx.index if self.name == "index" else ctx.item


@dataclass(frozen=True)
class _Array(_Node):
    items: tuple[_Node, ...]

    def kind(self) -> str:
        return _ARRAY

    def eval(self, ctx: _Ctx) -> Value:
        return tuple(item.eval(ctx) for item in self.items)


@dataclass(frozen=True)
class _Paren(_Node):
    inner: _Node

    def kind(self) -> str:
        return self.inner.kind()

    def eval(self, ctx: _Ctx) -> Value:
        return self.inner.eval(ctx)


def _is_num(v: Value) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _type(v: Value) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, tuple):
        return "array"
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

    def kind(self) -> str:
        return _SCALAR

    def eval(self, ctx: _Ctx) -> Value:
        v = self.operand.eval(ctx)
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


def _either_kind(a: _Node, b: _Node) -> str:
    return a.kind() if a.kind() == b.kind() else _ANY


@dataclass(frozen=True)
class _Binary(_Node):
    op: str
    left: _Node
    right: _Node

    def kind(self) -> str:
        return _either_kind(self.left, self.right) if self.op == "??" else _SCALAR

    def eval(self, ctx: _Ctx) -> Value:
        if self.op == "??":
            value = self.left.eval(ctx)
            return self.right.eval(ctx) if value is None else value
        return _arith(self.op, self.left.eval(ctx), self.right.eval(ctx))


@dataclass(frozen=True)
class _Logic(_Node):
    op: str  # "and" | "or"
    left: _Node
    right: _Node

    def kind(self) -> str:
        return _SCALAR

    def eval(self, ctx: _Ctx) -> Value:
        left = _bool(self.left.eval(ctx), f"operator {self.op!r}")
        if self.op == "and" and not left:
            return False
        if self.op == "or" and left:
            return True
        return _bool(self.right.eval(ctx), f"operator {self.op!r}")


def _equal(a: Value, b: Value) -> bool:
    if _is_num(a) and _is_num(b):
        return a == b
    if isinstance(a, bool) and isinstance(b, bool):
        return a == b
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a is None and b is None


@dataclass(frozen=True)
class _Compare(_Node):
    op: str
    left: _Node
    right: _Node

    def kind(self) -> str:
        return _SCALAR

    def eval(self, ctx: _Ctx) -> Value:
        a, b = self.left.eval(ctx), self.right.eval(ctx)
        if self.op == "==":
            return _equal(a, b)
        if self.op == "!=":
            return not _equal(a, b)
        if self.op in ("in", "not in"):
            if b is None:  # expr: anything `in nil` is false
                found = False
            elif isinstance(b, tuple):
                found = any(_equal(item, a) for item in b)
            else:
                raise _Eval(f'operator "in" not defined on {_type(b)}')
            return found if self.op == "in" else not found
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

    def kind(self) -> str:
        return _either_kind(self.then, self.otherwise)

    def eval(self, ctx: _Ctx) -> Value:
        if _bool(self.test.eval(ctx), "the condition of '? :'"):
            return self.then.eval(ctx)
        return self.otherwise.eval(ctx)


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


def _flatten(name: str, values: Collection[Value]) -> Iterator[int | float]:
    """The numbers of min/max/mean/median's arguments, nested arrays flattened (expr does the same)."""
    for v in values:
        if isinstance(v, tuple):
            yield from _flatten(name, v)
        elif _is_num(v):
            assert isinstance(v, int | float)
            yield v
        else:
            raise _Eval(f"invalid argument for {name}(): {_type(v)} (it takes numbers and arrays of numbers)")


def _call_aggregate(name: str, values: list[Value]) -> Value:
    if name in ("min", "max"):
        if len(values) == 1 and not (_is_num(values[0]) or isinstance(values[0], tuple)):
            return values[0]  # expr returns a lone non-numeric argument as it is (so max(nil) is nil)
        nums = list(_flatten(name, values))
        if not nums:
            return None
        return max(nums) if name == "max" else min(nums)
    nums = [float(n) for n in _flatten(name, values)]
    if not nums:
        return 0.0
    if name == "mean":
        total = 0.0
        for n in nums:  # left to right, as Go adds them
            total += n
        return total / len(nums)
    nums.sort()
    middle = len(nums) // 2
    return nums[middle] if len(nums) % 2 else (nums[middle - 1] + nums[middle]) / 2


def _call_array(name: str, v: Value) -> Value:
    if name == "len":
        if not isinstance(v, tuple):
            raise _Eval(f"invalid argument for len(): {_type(v)} (it takes an array)")
        return len(v)
    if not isinstance(v, tuple) or not v:
        return None  # expr: first/last of an empty array, or of something that is no array, is nil
    return v[0] if name == "first" else v[-1]


@dataclass(frozen=True)
class _Call(_Node):
    name: str
    args: tuple[_Node, ...]

    def kind(self) -> str:
        if self.name in ("first", "last"):
            return _ANY
        if self.name in ("min", "max") and len(self.args) == 1 and self.args[0].kind() == _ANY:
            return _ANY
        return _SCALAR

    def eval(self, ctx: _Ctx) -> Value:
        values = [a.eval(ctx) for a in self.args]
        if self.name in _AGGREGATE_FUNCS:
            return _call_aggregate(self.name, values)
        if self.name in _ARRAY_FUNCS:
            return _call_array(self.name, values[0])
        return _call_unary(self.name, values[0])


@dataclass(frozen=True)
class _PredicateCall(_Node):
    """all, any, none, one, count, filter, map, sum: the predicate is evaluated once per element, lazily."""

    name: str
    array: _Node
    predicate: _Node | None  # only count and sum may omit it

    def kind(self) -> str:
        return _ARRAY if self.name in ("filter", "map") else _SCALAR

    def _results(self, ctx: _Ctx, items: tuple[Value, ...]) -> Iterator[tuple[Value, Value]]:
        for i, item in enumerate(items):
            result = item if self.predicate is None else self.predicate.eval(_Ctx(ctx.values, item, i))
            yield item, result

    def _tests(self, ctx: _Ctx, items: tuple[Value, ...]) -> Iterator[tuple[Value, bool]]:
        what = (
            f"the predicate of {self.name}()"
            if self.predicate is not None
            else f"an element of {self.name}() without a predicate"
        )
        for item, result in self._results(ctx, items):
            yield item, _bool(result, what)

    def eval(self, ctx: _Ctx) -> Value:
        items = self.array.eval(ctx)
        if not isinstance(items, tuple):
            raise _Eval(f"{self.name}() needs an array as its first argument, got {_type(items)}")
        if self.name == "all":
            return all(ok for _, ok in self._tests(ctx, items))
        if self.name == "any":
            return any(ok for _, ok in self._tests(ctx, items))
        if self.name == "none":
            return not any(ok for _, ok in self._tests(ctx, items))
        if self.name == "one":
            return sum(ok for _, ok in self._tests(ctx, items)) == 1
        if self.name == "count":
            return sum(ok for _, ok in self._tests(ctx, items))
        if self.name == "filter":
            return tuple(item for item, ok in self._tests(ctx, items) if ok)
        if self.name == "map":
            return tuple(result for _, result in self._results(ctx, items))
        # sum: expr adds each element to an accumulator that starts at the integer 0.
        total: Value = 0
        for _, result in self._results(ctx, items):
            total = _arith("+", result, total)
        return total


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


def _refuse_array(node: _Node, what: str) -> None:
    if node.kind() == _ARRAY:
        raise _Problem(f"{what} cannot take an array")


def _check_function(tok: Token) -> None:
    if tok.value not in FUNCTIONS:
        raise _Problem(f"unknown function {tok.value!r} at {_where(tok)}; available: {', '.join(FUNCTIONS)}")


def _check_scopes(node: Tree[Token] | Token, depth: int) -> None:
    """`#` only means something inside a predicate, and `{...}` only stands where a predicate is expected."""
    if isinstance(node, Token):
        if node.type == "POINTER" and depth == 0:
            raise _Problem(
                f"{node.value!r} at {_where(node)} can only be used inside a predicate, the second argument of "
                f"{', '.join(sorted(_PREDICATE_FUNCS))} (as in count([a, b], {{# > 1}}))"
            )
        return
    if node.data == "call":
        name, *args = node.children
        assert isinstance(name, Token)
        _check_function(name)
        for i, arg in enumerate(args):
            predicate = name.value in _PREDICATE_FUNCS and i == 1
            if isinstance(arg, Tree) and arg.data == "closure" and not predicate:
                where = f"line {arg.meta.line}, column {arg.meta.column}"
                raise _Problem(
                    f"a predicate {{...}} at {where} can only be the second argument of "
                    f"{', '.join(sorted(_PREDICATE_FUNCS))}"
                )
            _check_scopes(arg, depth + 1 if predicate else depth)
        return
    for child in node.children:
        _check_scopes(child, depth)


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

    def pointer(self, tok: Token) -> _Node:
        name = tok.value[1:]
        if name not in _POINTERS:
            raise _Problem(f"unknown pointer {tok.value!r} at {_where(tok)}; a predicate knows # and #index")
        return _Pointer(name)

    def array(self, *items: _Node) -> _Node:
        return _Array(items)

    def closure(self, inner: _Node) -> _Node:
        return inner  # where a closure may stand was checked before building

    def paren(self, inner: _Node) -> _Node:
        return _Paren(inner)

    def call(self, tok: Token, *args: _Node) -> _Node:
        name, where = tok.value, _where(tok)
        _check_function(tok)
        if name in _PREDICATE_FUNCS:
            low = 1 if name in _OPTIONAL_PREDICATE else 2
            if not low <= len(args) <= 2:
                expected = "1 or 2" if low == 1 else "2"
                raise _Problem(
                    f"{name}() takes {expected} arguments (an array and a predicate), got {len(args)} at {where}"
                )
            self._array_argument(name, args[0], where)
            return _PredicateCall(name, args[0], args[1] if len(args) == 2 else None)
        if name in _AGGREGATE_FUNCS:
            if not args:
                raise _Problem(f"{name}() needs at least 1 argument at {where}")
            return _Call(name, args)
        if len(args) != 1:
            raise _Problem(f"{name}() takes exactly 1 argument, got {len(args)} at {where}")
        if name in _ARRAY_FUNCS:
            self._array_argument(name, args[0], where)
        elif args[0].kind() == _ARRAY:
            raise _Problem(f"{name}() needs a number, not an array, at {where}")
        return _Call(name, args)

    @staticmethod
    def _array_argument(name: str, arg: _Node, where: str) -> None:
        if arg.kind() == _SCALAR:
            example = f", as in {name}([a, b], {{# > 1}})" if name in _PREDICATE_FUNCS else ""
            raise _Problem(f"{name}() needs an array as its first argument at {where}{example}")

    def neg(self, operand: _Node) -> _Node:
        _refuse_array(operand, "unary '-'")
        return _Unary("-", operand)

    def pos(self, operand: _Node) -> _Node:
        _refuse_array(operand, "unary '+'")
        return _Unary("+", operand)

    def not_(self, operand: _Node) -> _Node:
        _refuse_array(operand, "operator '!'")
        return _Unary("!", operand)

    def binary(self, left: _Node, op: Token, right: _Node) -> _Node:
        if op.value != "??":
            _refuse_mixed_coalesce(left, op.value, f" at {_where(op)}")
            _refuse_array(left, f"operator {op.value!r} at {_where(op)}")
            _refuse_array(right, f"operator {op.value!r} at {_where(op)}")
        return _Binary(op.value, left, right)

    def and_(self, left: _Node, right: _Node) -> _Node:
        _refuse_mixed_coalesce(left, "&&", "")
        _refuse_array(left, "operator '&&'")
        _refuse_array(right, "operator '&&'")
        return _Logic("and", left, right)

    def or_(self, left: _Node, right: _Node) -> _Node:
        _refuse_mixed_coalesce(left, "||", "")
        _refuse_array(left, "operator '||'")
        _refuse_array(right, "operator '||'")
        return _Logic("or", left, right)

    def cond(self, test: _Node, then: _Node, otherwise: _Node) -> _Node:
        _refuse_array(test, "the condition of '? :'")
        return _Cond(test, then, otherwise)

    def cmp_op(self, *toks: Token) -> Token:
        if len(toks) == 2:  # `not in`
            return Token.new_borrow_pos("CMP_OP", "not in", toks[0])
        return toks[0]

    def compare(self, first: _Node, *rest: _Node | Token) -> _Node:
        # expr: relational operators chain (a < b < c is a < b && b < c); ==, != and in do not.
        node, left = first, first
        chaining = False
        for i in range(0, len(rest), 2):
            op, right = rest[i], rest[i + 1]
            assert isinstance(op, Token) and isinstance(right, _Node)
            if node is first:
                _refuse_mixed_coalesce(first, op.value, f" at {_where(op)}")
            relational = op.value in ("<", ">", "<=", ">=")
            lhs = left if chaining and relational else node
            if relational:
                _refuse_array(lhs, f"operator {op.value!r} at {_where(op)}")
                _refuse_array(right, f"operator {op.value!r} at {_where(op)}")
            if op.value in ("in", "not in") and right.kind() == _SCALAR:
                raise _Problem(f"operator {op.value!r} at {_where(op)} needs an array on its right, as in a in [1, 2]")
            cmp = _Compare(op.value, lhs, right)
            node = _Logic("and", node, cmp) if chaining and relational else cmp
            chaining = relational
            left = right
        return node


def _syntax_message(exc: UnexpectedInput) -> str:
    where = f"line {exc.line}, column {exc.column}"
    if isinstance(exc, UnexpectedCharacters):
        return f"syntax error at {where}: unexpected character {exc.char!r}"
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        return "syntax error: the formula ends too early (an operand or a closing bracket is missing)"
    if isinstance(exc, UnexpectedToken):
        return f"syntax error at {where}: unexpected {exc.token.value!r}"
    return f"syntax error at {where}"


def _show(v: Value) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return "nil" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


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
            result = self._root.eval(_Ctx(values))
        except _Eval as exc:
            raise FormulaEvaluationError(self.obj, str(exc)) from None
        except RecursionError:
            raise FormulaEvaluationError(self.obj, "formula too deeply nested") from None
        if result is None:
            return None
        if isinstance(result, tuple):
            raise FormulaEvaluationError(
                self.obj, f"formula returned an array ({_show(result)}); it must return a number or nil"
            )
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
        _check_scopes(tree, 0)
        root = builder.transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, _Problem):
            raise FormulaError(obj, FORMULA_FIELD, str(exc.orig_exc)) from None
        raise
    except _Problem as exc:
        raise FormulaError(obj, FORMULA_FIELD, str(exc)) from None
    except RecursionError:
        raise FormulaError(obj, FORMULA_FIELD, "the formula is too deeply nested") from None
    if root.kind() == _ARRAY:
        raise FormulaError(obj, FORMULA_FIELD, "the formula returns an array; it must return a number or nil")
    return Formula(formula, frozenset(builder.used), root, obj)


__all__: list[str] = [
    "FUNCTIONS",
    "Formula",
    "FormulaError",
    "FormulaEvaluationError",
    "compile_formula",
]
