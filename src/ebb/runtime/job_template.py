"""Which fields of a ScaledJob's Job template a local run honours, which it refuses, and which mean nothing here.

Honoured as a Kubernetes Job would: backoffLimit (default 6), activeDeadlineSeconds, ttlSecondsAfterFinished,
restartPolicy (OnFailure and Never both retry a failed attempt until backoffLimit), parallelism and
completions of 1. Refused, with the field named: anything that would make a local job behave differently
from the Job on a cluster (parallel or indexed jobs, failure or success policies, suspend, several
containers). Fields that only place or shape pods (nodeSelector, resources, volumes...) have no local
meaning and are listed once as a note.
"""

from __future__ import annotations

from dataclasses import dataclass

from ebb.errors import SpecError
from ebb.spec.models import ScaledJob

#: Kubernetes' default backoffLimit for a Job.
DEFAULT_BACKOFF_LIMIT = 6

_TEMPLATE = "spec.jobTargetRef"
#: JobSpec fields with no effect on a local run (they select or manage pods on a cluster).
_CLUSTER_ONLY_JOB_FIELDS = frozenset({"selector", "manualSelector", "managedBy", "podReplacementPolicy"})
#: JobSpec fields a local run cannot honour, and why.
_REFUSED_JOB_FIELDS = {
    "backoffLimitPerIndex": "indexed jobs need a cluster",
    "maxFailedIndexes": "indexed jobs need a cluster",
    "podFailurePolicy": "pod failure policies need a cluster",
    "successPolicy": "success policies need a cluster",
}
#: Container fields a local run uses.
_LOCAL_CONTAINER_FIELDS = frozenset({"name", "image", "command", "args", "env", "envFrom", "workingDir"})


@dataclass(frozen=True)
class LocalJobSettings:
    backoff_limit: int
    active_deadline_seconds: float | None
    ttl_seconds_after_finished: float | None
    #: Template fields with no local meaning, as dotted paths (for a one-time note).
    cluster_only: tuple[str, ...]


def local_job_settings(sj: ScaledJob) -> LocalJobSettings:
    """The Job template's settings for a local run; SpecError names the first field ebb cannot honour."""
    ref = sj.ref
    job = sj.spec.job_target_ref
    for name, value in (("parallelism", job.parallelism), ("completions", job.completions)):
        if value is not None and value != 1:
            raise SpecError(
                ref,
                f"{_TEMPLATE}.{name}",
                f"ebb run runs one process per job; {name} {value} needs a cluster (`ebb operator`), or set it to 1",
            )
    cluster_only: list[str] = []
    for key, value in (job.model_extra or {}).items():
        path = f"{_TEMPLATE}.{key}"
        if key in _CLUSTER_ONLY_JOB_FIELDS:
            cluster_only.append(path)
        elif key in _REFUSED_JOB_FIELDS:
            raise SpecError(ref, path, f"not supported by ebb run: {_REFUSED_JOB_FIELDS[key]} (`ebb operator`)")
        elif key == "suspend":
            if value not in (False, None):
                raise SpecError(ref, path, "a suspended Job never runs; ebb run does not run suspended jobs")
        elif key == "completionMode":
            if value not in ("NonIndexed", None):
                raise SpecError(ref, path, f"completionMode {value!r} needs a cluster; ebb run runs NonIndexed jobs")
        else:
            raise SpecError(ref, path, "not a Job field ebb run knows; check its spelling")
    pod = job.template.spec
    containers = pod.containers
    if len(containers) > 1:
        names = ", ".join(c.name or f"#{i}" for i, c in enumerate(containers))
        raise SpecError(
            ref,
            f"{_TEMPLATE}.template.spec.containers[1]",
            f"a local job runs the first container's command only; this template has {len(containers)} "
            f"containers ({names}): run it on a cluster, or keep one container",
        )
    for key in pod.model_extra or {}:
        if key == "initContainers":
            raise SpecError(
                ref, f"{_TEMPLATE}.template.spec.initContainers", "init containers need a cluster (ebb run runs one)"
            )
        cluster_only.append(f"{_TEMPLATE}.template.spec.{key}")
    for key in containers[0].model_extra or {}:
        if key not in _LOCAL_CONTAINER_FIELDS:
            cluster_only.append(f"{_TEMPLATE}.template.spec.containers[0].{key}")
    return LocalJobSettings(
        backoff_limit=DEFAULT_BACKOFF_LIMIT if job.backoff_limit is None else job.backoff_limit,
        active_deadline_seconds=None if job.active_deadline_seconds is None else float(job.active_deadline_seconds),
        ttl_seconds_after_finished=(
            None if job.ttl_seconds_after_finished is None else float(job.ttl_seconds_after_finished)
        ),
        cluster_only=tuple(cluster_only),
    )
