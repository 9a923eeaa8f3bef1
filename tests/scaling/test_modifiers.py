"""scalingModifiers formulas: KEDA's documented examples, expr-lang's precedence and nil rules, and errors."""

from __future__ import annotations

import pytest

from ebb.errors import FormulaError, SpecError
from ebb.scaling.modifiers import FormulaEvaluationError, compile_formula

NAMES = ("trig_one", "trig_two", "a", "b", "c")
OBJ = "ScaledObject default/worker"


def evaluate(formula: str, **values: float | None) -> float | None:
    return compile_formula(formula, NAMES, OBJ).evaluate(values)


@pytest.mark.parametrize(
    ("formula", "values", "expected"),
    [
        # KEDA docs examples.
        ("(trig_one + trig_two)/2", {"trig_one": 3, "trig_two": 6}, 4.5),
        ("trig_one > 2 ? trig_one + trig_two : 1", {"trig_one": 3, "trig_two": 6}, 9.0),
        ("trig_one > 2 ? trig_one + trig_two : 1", {"trig_one": 2, "trig_two": 6}, 1.0),
        ("a ?? b ?? 8", {"a": 5, "b": 7}, 5.0),
        ("a ?? b ?? 8", {"a": None, "b": 7}, 7.0),
        ("a ?? b ?? 8", {"a": None, "b": None}, 8.0),
        ("a ?? b ?? 8", {}, 8.0),  # a trigger missing from the values is nil
        ("max(a, b)", {"a": 2, "b": 9}, 9.0),
        ("min(a, b, 4)", {"a": 5, "b": 9}, 4.0),
        # Precedence (expr's operator table): * before +, ** right-associative and above unary minus.
        ("a + b * c", {"a": 1, "b": 2, "c": 3}, 7.0),
        ("(a + b) * c", {"a": 1, "b": 2, "c": 3}, 9.0),
        ("2 ** 3 ** 2", {}, 512.0),  # 2 ** 9
        ("2 ^ 3", {}, 8.0),
        ("-a ** 2", {"a": 3}, -9.0),  # -(3 ** 2)
        ("a - -b", {"a": 3, "b": 2}, 5.0),
        ("a * -b", {"a": 3, "b": 2}, -6.0),
        ("10 - 4 - 3", {}, 3.0),  # left-associative
        ("7 / 2", {}, 3.5),  # `/` always gives a float, even between integers
        ("7 % 3", {}, 1.0),
        ("-7 % 3", {}, -1.0),  # Go's remainder keeps the dividend's sign
        ("a % 4", {"a": 10.5}, 2.5),
        # Comparisons, chains and boolean operators feeding a ternary.
        ("1 < a < 3 ? 10 : 20", {"a": 2}, 10.0),
        ("1 < a < 3 ? 10 : 20", {"a": 5}, 20.0),  # chain is 1 < a && a < 3
        ("a == b ? 1 : 0", {"a": 2, "b": 2.0}, 1.0),
        ("a != b ? 1 : 0", {"a": 2, "b": 3}, 1.0),
        ("a > 1 && b > 1 ? 1 : 0", {"a": 2, "b": 0}, 0.0),
        ("a > 1 and b > 1 ? 1 : 0", {"a": 2, "b": 2}, 1.0),
        ("a > 1 || b > 1 ? 1 : 0", {"a": 0, "b": 2}, 1.0),
        ("a > 1 or b > 1 ? 1 : 0", {"a": 0, "b": 0}, 0.0),
        ("!(a > 1) ? 1 : 0", {"a": 0}, 1.0),
        ("not (a > 1) ? 1 : 0", {"a": 5}, 0.0),
        ("a == nil ? 3 : a", {"a": None}, 3.0),
        ("a == nil ? 3 : a", {"a": 4}, 4.0),
        ("true ? 1 : 2", {}, 1.0),
        ("a > 5 ? 1 : a > 2 ? 2 : 3", {"a": 3}, 2.0),  # ternaries nest to the right
        # `??` binds tighter than any other operator: 1 + (a ?? b).
        ("1 + a ?? b", {"a": None, "b": 4}, 5.0),
        ("(a ?? 2) * 3", {"a": None}, 6.0),
        # Short-circuit: the right side is not evaluated (b is nil, b > 1 would fail).
        ("a > 1 || b > 1 ? 1 : 0", {"a": 5, "b": None}, 1.0),
        # Functions.
        ("abs(a)", {"a": -2.5}, 2.5),
        ("ceil(a)", {"a": 1.2}, 2.0),
        ("floor(a)", {"a": 1.8}, 1.0),
        ("round(a)", {"a": 2.5}, 3.0),  # half away from zero, as Go's math.Round
        ("round(a)", {"a": -2.5}, -3.0),
        ("int(a)", {"a": -2.7}, -2.0),  # truncation
        ("float(7) / 2", {}, 3.5),
        ("1_000 + .5 + 1e2", {}, 1100.5),
        # A formula may evaluate to nil: the caller then uses the fallback.
        ("a ?? nil", {"a": None}, None),
        ("nil", {}, None),
    ],
)
def test_evaluate(formula: str, values: dict[str, float | None], expected: float | None) -> None:
    result = evaluate(formula, **values)
    assert result == expected
    assert result is None or isinstance(result, float)


@pytest.mark.parametrize(
    ("formula", "values", "fragment"),
    [
        ("a / b", {"a": 1, "b": 0}, "division by zero"),
        ("a % 0", {"a": 1}, "modulo by zero"),
        ("a + b", {"a": 1, "b": None}, "invalid operation: int + nil"),
        ("a > 2", {"a": 3}, "non-numeric result (bool)"),
        ("a ? 1 : 2", {"a": 1}, "needs a bool"),
        ("a && true ? 1 : 0", {"a": 1}, "needs a bool"),
        ("-a", {"a": None}, "needs a number, got nil"),
        ("max(a, b)", {"a": 1, "b": None}, "invalid argument for max(): nil"),
        ("a > nil ? 1 : 0", {"a": 1}, "invalid operation"),
        ("10 ** a", {"a": 400}, "10 ** 400"),  # overflow
        ("a ** 0.5", {"a": -4}, "math domain error"),
        ("int(a / 0.0 + 1)", {"a": 1}, "division by zero"),
    ],
)
def test_evaluation_errors_are_typed(formula: str, values: dict[str, float | None], fragment: str) -> None:
    with pytest.raises(FormulaEvaluationError) as info:
        evaluate(formula, **values)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{OBJ}: spec.advanced.scalingModifiers.formula:")


@pytest.mark.parametrize(
    ("formula", "fragment"),
    [
        ("", "the formula is empty"),
        ("a +", "ends too early"),
        ("(a + b", "ends too early"),
        ("a b", "column 3: unexpected 'b'"),
        ("a # b", "column 3: unexpected '#'"),
        ("a + x", "unknown name 'x' at line 1, column 5; known trigger names: a, b, c, trig_one, trig_two"),
        ("foo(a)", "unknown function 'foo' at line 1, column 1"),
        ("abs(a, b)", "abs() takes exactly 1 argument, got 2"),
        ("max()", "max() needs at least 1 argument"),
        # expr refuses another operator right after a coalesce without parentheses.
        ("a ?? b + 1", "operator '+' and coalesce expressions (??) cannot be mixed at line 1, column 8"),
        ("a ?? b == 1", "operator '==' and coalesce expressions (??) cannot be mixed"),
        ("a ?? b || true", "operator '||' and coalesce expressions (??) cannot be mixed"),
        ("a = 1", "unexpected character '='"),
        ("'text'", "unexpected character"),
    ],
)
def test_compile_errors_name_the_field_and_the_place(formula: str, fragment: str) -> None:
    with pytest.raises(FormulaError) as info:
        compile_formula(formula, NAMES, OBJ)
    err = info.value
    assert isinstance(err, SpecError)
    assert (err.obj, err.field) == (OBJ, "spec.advanced.scalingModifiers.formula")
    assert fragment in err.message


def test_no_named_triggers_is_explained() -> None:
    with pytest.raises(FormulaError, match="only triggers with a `name` can be used"):
        compile_formula("a + 1", [], OBJ)


def test_keywords_do_not_swallow_longer_names() -> None:
    # `android`, `order` and `nilly` start with keywords but are names.
    formula = compile_formula("android + order + nilly", ["android", "order", "nilly"], OBJ)
    assert formula.evaluate({"android": 1, "order": 2, "nilly": 3}) == 6.0
    assert formula.names == frozenset({"android", "order", "nilly"})


def test_names_lists_only_referenced_triggers() -> None:
    assert compile_formula("a * 2", NAMES, OBJ).names == frozenset({"a"})


# --- arrays, predicates and the array builtins (expr-lang's docs/language-definition.md) ----------------------

KEDA_DOC = "count([trig_one,trig_two,trig_three],{#>1}) > 1 ? 5 : 0"  # KEDA 2.20 scaling-deployments.md


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"trig_one": 2, "trig_two": 3, "trig_three": 0}, 5.0),  # two values above 1
        ({"trig_one": 2, "trig_two": 1, "trig_three": 0}, 0.0),  # only one
        ({"trig_one": 1.5, "trig_two": 1.01, "trig_three": 9}, 5.0),  # three
        ({"trig_one": 0, "trig_two": 0, "trig_three": 0}, 0.0),
    ],
)
def test_keda_documented_count_example(values: dict[str, float], expected: float) -> None:
    formula = compile_formula(KEDA_DOC, ("trig_one", "trig_two", "trig_three"), OBJ)
    assert formula.names == frozenset({"trig_one", "trig_two", "trig_three"})
    assert formula.evaluate(values) == expected


@pytest.mark.parametrize(
    ("formula", "values", "expected"),
    [
        # count: elements for which the predicate is true; without a predicate, the true elements.
        ("count([a, b, c], {# > 1})", {"a": 2, "b": 0, "c": 7}, 2.0),
        ("count([a, b, c], # > 1)", {"a": 2, "b": 0, "c": 7}, 2.0),  # braces are optional, as in expr
        ("count([a > 1, b > 1, true])", {"a": 2, "b": 0}, 2.0),
        ("count([], {# > 1})", {}, 0.0),
        ("count([1, 2, 3], {# > 1},)", {}, 2.0),  # expr accepts a trailing comma
        # all / any / none / one, including their empty-array values.
        ("all([a, b], {# > 1}) ? 1 : 0", {"a": 2, "b": 3}, 1.0),
        ("all([a, b], {# > 1}) ? 1 : 0", {"a": 2, "b": 1}, 0.0),
        ("all([], {# > 1}) ? 1 : 0", {}, 1.0),
        ("any([a, b], {# > 1}) ? 1 : 0", {"a": 0, "b": 3}, 1.0),
        ("any([a, b], {# > 1}) ? 1 : 0", {"a": 0, "b": 1}, 0.0),
        ("any([], {# > 1}) ? 1 : 0", {}, 0.0),
        ("none([a, b], {# > 1}) ? 1 : 0", {"a": 0, "b": 1}, 1.0),
        ("none([a, b], {# > 1}) ? 1 : 0", {"a": 0, "b": 3}, 0.0),
        ("none([], {# > 1}) ? 1 : 0", {}, 1.0),
        ("one([a, b, c], {# > 1}) ? 1 : 0", {"a": 0, "b": 3, "c": 1}, 1.0),
        ("one([a, b, c], {# > 1}) ? 1 : 0", {"a": 2, "b": 3, "c": 1}, 0.0),
        ("one([], {# > 1}) ? 1 : 0", {}, 0.0),
        # filter and map give arrays that other builtins consume.
        ("len(filter([a, b, c], {# >= 2}))", {"a": 2, "b": 1, "c": 5}, 2.0),  # [2, 5]
        ("sum(filter([a, b, c], {# >= 2}))", {"a": 2, "b": 1, "c": 5}, 7.0),
        ("sum(map([a, b], {# * 10}))", {"a": 2, "b": 3}, 50.0),
        ("last(map([a, b], {# + 1}))", {"a": 2, "b": 3}, 4.0),
        # #index is the element's position: 1*0 + 5*1 + 7*2.
        ("sum(map([1, 5, 7], {# * #index}))", {}, 19.0),
        ("sum([1, 5, 7], {#index})", {}, 3.0),
        # sum, with and without a predicate; the empty sum is 0.
        ("sum([a, b, 1.5])", {"a": 2, "b": 3}, 6.5),
        ("sum([a, b], {# * #})", {"a": 2, "b": 3}, 13.0),
        ("sum([])", {}, 0.0),
        # len / first / last; first and last of an empty array are nil (the caller then uses the fallback).
        ("len([a, b, c])", {}, 3.0),  # nil elements count
        ("len([])", {}, 0.0),
        ("first([a, b])", {"a": 4, "b": 9}, 4.0),
        ("last([a, b])", {"a": 4, "b": 9}, 9.0),
        ("first([])", {}, None),
        ("last([]) ?? 3", {}, 3.0),
        # min / max on arrays (flattened, as expr does) and variadic; the empty min is nil.
        ("max([a, b, c])", {"a": 4, "b": 9, "c": 2}, 9.0),
        ("min([a, b, c])", {"a": 4, "b": 9, "c": 2}, 2.0),
        ("max([a, [b, 12]], c)", {"a": 4, "b": 9, "c": 2}, 12.0),
        ("min(a, [b, c])", {"a": 4, "b": 9, "c": 2}, 2.0),
        ("max([])", {}, None),
        ("max([]) ?? 1", {}, 1.0),
        ("max(a)", {"a": None}, None),  # expr returns a lone non-numeric argument unchanged
        # mean / median: always float, 0 for an empty array.
        ("mean([a, b, c])", {"a": 1, "b": 2, "c": 6}, 3.0),
        ("mean([1, 2])", {}, 1.5),
        ("mean(1, [2, 6])", {}, 3.0),
        ("mean([])", {}, 0.0),
        ("median([a, b, c])", {"a": 7, "b": 1, "c": 3}, 3.0),
        ("median([4, 1, 3, 2])", {}, 2.5),  # even count: mean of 2 and 3
        ("median([])", {}, 0.0),
        # in / not in (same precedence as ==; numbers compare across int and float).
        ("a in [1, 2] ? 10 : 20", {"a": 2.0}, 10.0),
        ("a in [1, 2] ? 10 : 20", {"a": 3}, 20.0),
        ("a not in [1, 2] ? 10 : 20", {"a": 3}, 10.0),
        ("a in [b, c] ? 10 : 20", {"a": 5, "b": None, "c": 5}, 10.0),
        ("a in [1, b] ? 10 : 20", {"a": None, "b": None}, 10.0),  # nil == nil
        ("a in [] ? 10 : 20", {"a": 1}, 20.0),
        ("a + 1 in [3] ? 10 : 20", {"a": 2}, 10.0),  # + binds tighter than in
        ("[a, b] == [1, 2] ? 1 : 0", {"a": 1, "b": 2.0}, 1.0),
        ("[a, b] == [1] ? 1 : 0", {"a": 1, "b": 2}, 0.0),
        # Nested closures: the inner # is the inner element.
        ("count([[1, 2], [3], []], {all(#, {# > 1})})", {}, 2.0),  # [3] and [] (all of [] is true)
        ("sum([[1, 2], [3, 4]], {sum(#)})", {}, 10.0),
        ("sum(map([[a, b], [c]], {max(#)}))", {"a": 1, "b": 5, "c": 2}, 7.0),
        ("count([a, b], {any([1, 2], {# == 2}) && # > 0})", {"a": 1, "b": 0}, 1.0),
        # nil elements: comparisons with nil are fine for == and !=, as in expr.
        ("count([a, b, c], {# != nil})", {"a": 1, "b": None}, 1.0),
        ("count([a, b], # == nil) > 0 ? 1 : 0", {"a": 1, "b": None}, 1.0),
        ("sum(filter([a, b, c], {# != nil}))", {"a": 1, "b": None, "c": 4}, 5.0),
        ("count([a, b], {(# ?? 0) > 1})", {"a": None, "b": 3}, 1.0),
        # Arrays may flow through a ternary as long as something consumes them.
        ("len(a > 1 ? [1, 2] : [3])", {"a": 5}, 2.0),
        ("1 in (a > 0 ? nil : [1]) ? 1 : 0", {"a": 1}, 0.0),  # expr: anything `in nil` is false
        ("1 in (a > 0 ? nil : [1]) ? 1 : 0", {"a": 0}, 1.0),
    ],
)
def test_arrays_and_builtins(formula: str, values: dict[str, float | None], expected: float | None) -> None:
    result = evaluate(formula, **values)
    assert result == expected
    assert result is None or isinstance(result, float)


def test_predicate_is_evaluated_lazily() -> None:
    # any stops at the first true element and all at the first false one, like expr's loops: the nil
    # element after it would otherwise fail the comparison.
    assert evaluate("any([a, b], {# > 1}) ? 1 : 0", a=5, b=None) == 1.0
    assert evaluate("all([a, b], {# > 1}) ? 1 : 0", a=0, b=None) == 0.0
    with pytest.raises(FormulaEvaluationError, match="nil > int"):
        evaluate("any([a, b], {# > 1}) ? 1 : 0", a=0, b=None)


@pytest.mark.parametrize(
    ("formula", "values", "fragment"),
    [
        # nil elements follow expr: ordering comparisons and arithmetic with nil fail.
        ("count([a, b], {# > 1})", {"a": None, "b": 2}, "invalid operation: nil > int"),
        ("sum([a, b])", {"a": 1, "b": None}, "invalid operation: nil + int"),
        ("mean([a, b])", {"a": 1, "b": None}, "invalid argument for mean(): nil"),
        ("median([a, b])", {"a": 1, "b": None}, "invalid argument for median(): nil"),
        ("min([a, b])", {"a": 1, "b": None}, "invalid argument for min(): nil"),
        ("max([a > 1])", {"a": 1}, "invalid argument for max(): bool"),
        # Predicates must give a bool; count without a predicate needs bool elements.
        ("count([a, b], {#})", {"a": 1, "b": 2}, "the predicate of count() needs a bool, got int"),
        ("all([a], {# ?? 1})", {"a": None}, "the predicate of all() needs a bool, got int"),
        ("count([a, b])", {"a": 1, "b": 2}, "an element of count() without a predicate needs a bool, got int"),
        # An array where a number is needed, known only when evaluating.
        ("a > 1 ? [a] : 0", {"a": 2}, "formula returned an array ([2]); it must return a number or nil"),
        ("first([[a, b]])", {"a": 2, "b": None}, "formula returned an array ([2, nil])"),
        ("abs(first([[1]]))", {}, "abs() needs a number, got array"),
        ("count([[1]], {# > 0})", {}, "invalid operation: array > int"),
        ("len(first([a]))", {"a": 1}, "invalid argument for len(): int"),
        ("all(first([a]), {# > 0})", {"a": 1}, "all() needs an array as its first argument, got int"),
        ("1 in (a > 0 ? 5 : [1])", {"a": 1}, 'operator "in" not defined on int'),
    ],
)
def test_array_evaluation_errors(formula: str, values: dict[str, float | None], fragment: str) -> None:
    with pytest.raises(FormulaEvaluationError) as info:
        evaluate(formula, **values)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{OBJ}: spec.advanced.scalingModifiers.formula:")


@pytest.mark.parametrize(
    ("formula", "fragment"),
    [
        # `#` and `{...}` belong to predicates.
        ("# + 1", "'#' at line 1, column 1 can only be used inside a predicate"),
        ("max([a], #)", "'#' at line 1, column 10 can only be used inside a predicate"),
        ("count(#, {# > 1})", "'#' at line 1, column 7 can only be used inside a predicate"),
        ("max({# > 1})", "a predicate {...} at line 1, column 5 can only be the second argument of"),
        ("count([a], {# > 1}, 2)", "count() takes 1 or 2 arguments (an array and a predicate), got 3"),
        ("filter([a])", "filter() takes 2 arguments (an array and a predicate), got 1 at line 1, column 1"),
        ("count([a], {#acc > 1})", "unknown pointer '#acc' at line 1, column 13"),
        ("{a}", "unexpected '{'"),
        # Syntax errors inside arrays and closures keep their position.
        ("count([a, b], {# > })", "syntax error at line 1, column 20: unexpected '}'"),
        ("count([a, b], {# > 1)", "syntax error at line 1, column 21: unexpected ')'"),
        ("[a, , b]", "syntax error at line 1, column 5: unexpected ','"),
        ("[a, b", "ends too early"),
        ("count([a, x], {# > 1})", "unknown name 'x' at line 1, column 11"),
        ("count([a], {# > x})", "unknown name 'x' at line 1, column 17"),
        ("avg([a])", "unknown function 'avg' at line 1, column 1"),
        # What expr's type checker refuses because a trigger is a number, never an array.
        ("count(a, {# > 1})", "count() needs an array as its first argument at line 1, column 1"),
        ("len(a)", "len() needs an array as its first argument at line 1, column 1"),
        ("first(a + 1)", "first() needs an array"),
        ("a in b", "operator 'in' at line 1, column 3 needs an array on its right"),
        ("[a] + 1", "operator '+' at line 1, column 5 cannot take an array"),
        ("[a] > 1", "operator '>' at line 1, column 5 cannot take an array"),
        ("-[a]", "unary '-' cannot take an array"),
        ("[a] && true", "operator '&&' cannot take an array"),
        ("abs([a])", "abs() needs a number, not an array"),
        ("[a] ? 1 : 0", "the condition of '? :' cannot take an array"),
        ("len([a]) ?? 1 + 2", "cannot be mixed"),
        # The whole formula must be a number (or nil).
        ("[a, b]", "the formula returns an array; it must return a number or nil"),
        ("filter([a, b], {# > 1})", "the formula returns an array"),
        ("map([a], {# * 2})", "the formula returns an array"),
        ("(a > 1 ? [a] : [b])", "the formula returns an array"),
    ],
)
def test_array_compile_errors(formula: str, fragment: str) -> None:
    with pytest.raises(FormulaError) as info:
        compile_formula(formula, NAMES, OBJ)
    assert (info.value.obj, info.value.field) == (OBJ, "spec.advanced.scalingModifiers.formula")
    assert fragment in info.value.message


def test_index_is_a_trigger_name_outside_predicates() -> None:
    # `#index` is a pointer and `in` an operator, but triggers called `index` or `inflight` stay usable.
    formula = compile_formula("index + inflight + count([index], {# > #index})", ["index", "inflight"], OBJ)
    assert formula.evaluate({"index": 2, "inflight": 3}) == 6.0
