"""The manifests in examples/ load, hang together and convert: what a user copies must work."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebb.spec import (
    ProcessGroup,
    ScaledJob,
    ScaledObject,
    load_files,
    object_policy,
    resolve_env,
    resolve_triggers_auth,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_the_promised_examples_exist() -> None:
    assert {path.name for path in FILES} >= {
        "redis-worker.yaml",
        "postgres-jobs.yaml",
        "cron.yaml",
        "kubernetes-deployment.yaml",
    }


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_example_loads_and_resolves(path: Path) -> None:
    result = load_files([path])
    assert result.errors == []
    assert result.objects
    store = result.resources
    for so in result.of(ScaledObject):
        object_policy(so, now=0.0)
        target_env = None
        if so.spec.scale_target_ref.is_process_group:
            group = store.scale_target(so)
            assert group is not None, f"{so.ref} scales a ProcessGroup the file does not define"
            target_env = resolve_env(group, store)
        resolve_triggers_auth(so, store, target_env)
    for job in result.of(ScaledJob):
        resolve_triggers_auth(job, store, resolve_env(job, store))
    for group in result.of(ProcessGroup):
        resolve_env(group, store)


def test_every_example_loads() -> None:
    # Each file on its own (as `ebb check --each examples`): examples/http holds two forms of one route, which
    # conflict when loaded as one set, and a directory is read with its subdirectories.
    from ebb.spec.loader import expand_paths

    kinds: set[str] = set()
    files = list(expand_paths([EXAMPLES]))
    assert EXAMPLES / "http" / "route.yaml" in files and EXAMPLES / "long-jobs" / "long-jobs.yaml" in files
    for path in files:
        result = load_files([path])
        assert result.errors == [], path
        kinds |= {obj.kind for obj in result.objects}
    assert kinds >= {"ScaledObject", "ScaledJob", "ProcessGroup", "TriggerAuthentication", "Secret"}
    assert any("defined more than once" in str(e) for e in load_files([EXAMPLES]).errors)


def test_redis_worker_example_wires_the_password_through() -> None:
    result = load_files([EXAMPLES / "redis-worker.yaml"])
    store = result.resources
    so = store.get(ScaledObject, "default", "redis-worker")
    assert so is not None
    group = store.scale_target(so)
    assert group is not None
    env = resolve_env(group, store)
    [auth] = resolve_triggers_auth(so, store, env)
    assert auth.params == {"password": env["REDIS_PASSWORD"]}
    assert so.spec.triggers[0].metadata["listName"] == "jobs"
