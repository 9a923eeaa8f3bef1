"""Every audited KEDA rule (ebb/spec/keda_rules.py), both ways, and the table in docs/validation.md up to date.

A row's `bad` case must get its finding at its field (an error, a warning or a note as the row says; the
webhook's refusal for rules that need the cluster); its `good` case, the nearest manifest KEDA accepts, must
load without an error. A check that goes missing, or that starts refusing what KEDA accepts, fails here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ebb.kube.rule_review import webhook_findings
from ebb.runtime.check import rule_findings
from ebb.spec.keda_rules import RULES, Rule

ROOT = Path(__file__).resolve().parents[2]


def _ids(rules: list[Rule]) -> list[str]:
    return [rule.id for rule in rules]


LOCAL = [rule for rule in RULES if rule.outcome != "cluster"]
CLUSTER = [rule for rule in RULES if rule.outcome == "cluster"]
WITH_GOOD = [rule for rule in RULES if rule.good is not None]


def test_rule_ids_are_unique_and_every_layer_is_covered() -> None:
    assert len({rule.id for rule in RULES}) == len(RULES)
    assert {rule.layer for rule in RULES} == {"CRD schema", "admission webhook", "controller", "scaler"}
    kinds = {rule.kind for rule in RULES}
    assert kinds == {
        "ScaledObject",
        "ScaledJob",
        "TriggerAuthentication",
        "ClusterTriggerAuthentication",
        "InterceptorRoute",
    }


@pytest.mark.parametrize("rule", LOCAL, ids=_ids(LOCAL))
def test_the_breaking_case_gets_its_finding(rule: Rule) -> None:
    found = rule_findings(rule, rule.bad)
    errors = [f for f in found if f.severity == "error"]
    if rule.outcome == "accepted":
        assert errors == []
    elif rule.outcome == "note":
        assert errors == []
        assert any(f.severity == "note" for f in found)
    else:
        assert [f.field for f in found if f.severity == rule.outcome and f.field == rule.field] == [rule.field], found
        if rule.outcome == "warning":
            assert errors == []


@pytest.mark.parametrize("rule", WITH_GOOD, ids=_ids(WITH_GOOD))
def test_the_nearest_case_keda_accepts_is_accepted(rule: Rule) -> None:
    assert rule.good is not None
    found = rule_findings(rule, rule.good)
    assert [f for f in found if f.severity == "error"] == []
    assert [f for f in found if f.field == rule.field and f.severity == rule.outcome] == []


@pytest.mark.parametrize("rule", CLUSTER, ids=_ids(CLUSTER))
async def test_rules_needing_the_cluster_are_refused_by_the_webhook(rule: Rule) -> None:
    refused = await webhook_findings(rule, rule.bad)
    assert [f.field for f in refused if f.severity == "error"] == [rule.field], refused
    rule_without_cluster = Rule(**{**rule.__dict__, "existing": ()})
    assert [f for f in await webhook_findings(rule_without_cluster, rule.bad) if f.severity == "error"] == []
    # `ebb check`, which has no cluster, does not refuse it.
    assert [f for f in rule_findings(rule, rule.bad) if f.severity == "error"] == []


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_validation_doc", ROOT / "scripts" / "gen_validation_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_docs_validation_md_is_generated_from_the_rules() -> None:
    generator = _generator()
    current = (ROOT / "docs" / "validation.md").read_text()
    assert generator.render(current) == current, "run: python scripts/gen_validation_doc.py"
    assert "NOT FOUND" not in current and "REFUSED" not in current
