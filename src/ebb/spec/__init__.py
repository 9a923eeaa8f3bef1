"""ebb's spec layer: KEDA's resources as pydantic models, YAML loading, conversion, credentials.

result = load_files(["workers.yaml"])
for error in result.errors: print(error)
for so in result.of(ScaledObject):
    policy = object_policy(so, now=time.time())
"""

from ebb.spec.auth import (
    DEFAULT_CLUSTER_OBJECT_NAMESPACE,
    AuthStore,
    ResolvedAuth,
    ResolvedEnv,
    resolve_container_env,
    resolve_env,
    resolve_trigger_auth,
    resolve_triggers_auth,
    unsupported_auth_providers,
)
from ebb.spec.convert import behavior, created_at, hpa_name, object_policy, pause_state
from ebb.spec.loader import LoadResult, ManifestError, load_files, load_text, parse_object
from ebb.spec.models import (
    KINDS,
    AuthenticationRef,
    ClusterTriggerAuthentication,
    ConfigMap,
    Container,
    EnvVar,
    KubeObject,
    ObjectMeta,
    ProcessGroup,
    ProcessGroupSpec,
    ScaledJob,
    ScaledJobSpec,
    ScaledObject,
    ScaledObjectSpec,
    ScaleTarget,
    ScaleTrigger,
    Secret,
    TriggerAuthentication,
    TriggerAuthenticationSpec,
)
from ebb.spec.paths import format_path
from ebb.spec.resources import ResourceSet

__all__ = [
    "DEFAULT_CLUSTER_OBJECT_NAMESPACE",
    "KINDS",
    "AuthStore",
    "AuthenticationRef",
    "ClusterTriggerAuthentication",
    "ConfigMap",
    "Container",
    "EnvVar",
    "KubeObject",
    "LoadResult",
    "ManifestError",
    "ObjectMeta",
    "ProcessGroup",
    "ProcessGroupSpec",
    "ResolvedAuth",
    "ResolvedEnv",
    "ResourceSet",
    "ScaleTarget",
    "ScaleTrigger",
    "ScaledJob",
    "ScaledJobSpec",
    "ScaledObject",
    "ScaledObjectSpec",
    "Secret",
    "TriggerAuthentication",
    "TriggerAuthenticationSpec",
    "behavior",
    "created_at",
    "format_path",
    "hpa_name",
    "load_files",
    "load_text",
    "object_policy",
    "parse_object",
    "pause_state",
    "resolve_container_env",
    "resolve_env",
    "resolve_trigger_auth",
    "resolve_triggers_auth",
    "unsupported_auth_providers",
]
