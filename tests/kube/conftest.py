from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._crdschema import status_violations, status_writes


@pytest.fixture(autouse=True)
def status_writes_fit_the_crd_schema(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that ran a fake API server: every status the code wrote to a ScaledObject or ScaledJob
    would have been kept as written by a real API server (nothing pruned by KEDA's CRD schema)."""
    if "kmock" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("kmock")  # set up before, so torn down after this check
    yield
    problems = [
        f"{plural}/{name}: {problem}"
        for plural, name, status in status_writes(server)
        for problem in status_violations(plural, status)
    ]
    assert not problems, "status writes a real API server would prune or refuse:\n" + "\n".join(problems)
