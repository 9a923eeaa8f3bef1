"""TriggerAuthentication resolution and a target's environment, against objects loaded from YAML."""

from __future__ import annotations

import pytest

from ebb.errors import SpecError
from ebb.spec import (
    ProcessGroup,
    ResolvedAuth,
    ResourceSet,
    ScaledJob,
    ScaledObject,
    load_text,
    resolve_env,
    resolve_trigger_auth,
    resolve_triggers_auth,
    unsupported_auth_providers,
)
from ebb.spec.auth import expand_references
from ebb.spec.models import TriggerAuthentication

STORE = """
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: team}
stringData: {password: team-secret, user: alice}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: ebb}
data: {password: Y2x1c3Rlci1zZWNyZXQ=}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: keda}
stringData: {password: keda-ns-secret}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: team}
data: {host: redis.team, password: from-configmap}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {name: full, namespace: team}
spec:
  env: [{parameter: password, name: APP_PASSWORD}, {parameter: region, name: REGION, containerName: main}]
  configMapTargetRef:
  - {parameter: host, name: settings, key: host}
  - {parameter: password, name: settings, key: password}
  secretTargetRef:
  - {parameter: password, name: creds, key: password}
  - {parameter: username, name: creds, key: user}
---
apiVersion: keda.sh/v1alpha1
kind: ClusterTriggerAuthentication
metadata: {name: shared}
spec:
  secretTargetRef: [{parameter: password, name: creds, key: password}]
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: worker, namespace: team}
spec:
  scaleTargetRef: {kind: ProcessGroup, name: worker}
  triggers:
  - {type: redis, metadata: {listName: q}, authenticationRef: {name: full}}
  - {type: redis, metadata: {listName: q}, authenticationRef: {name: shared, kind: ClusterTriggerAuthentication}}
  - {type: redis, metadata: {listName: q}}
  - {type: redis, metadata: {listName: q}, authenticationRef: {name: nowhere}}
"""

TARGET_ENV = {"APP_PASSWORD": "env-secret", "REGION": "eu-west-1"}


@pytest.fixture(scope="module")
def store() -> ResourceSet:
    result = load_text(STORE, "store.yaml")
    assert result.errors == []
    return result.resources


@pytest.fixture(scope="module")
def worker(store: ResourceSet) -> ScaledObject:
    so = store.get(ScaledObject, "team", "worker")
    assert so is not None
    return so


def test_sources_merge_in_kedas_order_secret_last(store: ResourceSet, worker: ScaledObject) -> None:
    auth = resolve_trigger_auth(worker.spec.triggers[0], "team", store, TARGET_ENV)
    assert auth.params == {
        "password": "team-secret",  # env, then configMap, then secret: the Secret wins
        "region": "eu-west-1",
        "host": "redis.team",
        "username": "alice",
    }
    assert auth.secret_values == frozenset({"team-secret", "alice", "env-secret", "eu-west-1"})
    assert "redis.team" not in auth.secret_values


@pytest.mark.parametrize(
    ("cluster_namespace", "expected"),
    [(None, "cluster-secret"), ("keda", "keda-ns-secret")],
)
def test_cluster_trigger_authentication_reads_the_cluster_object_namespace(
    store: ResourceSet, worker: ScaledObject, cluster_namespace: str | None, expected: str
) -> None:
    kwargs = {"cluster_object_namespace": cluster_namespace} if cluster_namespace else {}
    auth = resolve_trigger_auth(worker.spec.triggers[1], "team", store, **kwargs)  # type: ignore[arg-type]
    assert auth.params == {"password": expected}
    assert auth.secret_values == frozenset({expected})


def test_trigger_without_authentication_ref_has_no_params(store: ResourceSet, worker: ScaledObject) -> None:
    assert resolve_trigger_auth(worker.spec.triggers[2], "team", store) == ResolvedAuth()


def test_missing_trigger_authentication_names_object_and_ref(store: ResourceSet, worker: ScaledObject) -> None:
    with pytest.raises(SpecError) as caught:
        resolve_triggers_auth(worker, store, TARGET_ENV)
    error = caught.value
    assert (error.obj, error.field, error.message) == (
        "ScaledObject team/worker",
        "spec.triggers[3].authenticationRef",
        "TriggerAuthentication team/nowhere not found",
    )


def test_trigger_authentication_is_looked_up_in_the_objects_namespace(store: ResourceSet, worker: ScaledObject) -> None:
    with pytest.raises(SpecError, match="TriggerAuthentication default/full not found"):
        resolve_trigger_auth(worker.spec.triggers[0], "default", store, TARGET_ENV)


def auth_store(spec: str) -> tuple[ResourceSet, ScaledObject]:
    text = f"""
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{password: do-not-print, token: also-secret}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{host: h}}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: auth}}
spec: {spec}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: so}}
spec:
  scaleTargetRef: {{name: so}}
  triggers: [{{type: redis, metadata: {{listName: q}}, authenticationRef: {{name: auth}}}}]
"""
    result = load_text(text)
    assert result.errors == []
    so = result.of(ScaledObject)[0]
    return result.resources, so


@pytest.mark.parametrize(
    ("spec", "target_env", "message"),
    [
        (
            "{secretTargetRef: [{parameter: p, name: other, key: password}]}",
            {},
            "TriggerAuthentication default/auth: secretTargetRef[0]: Secret default/other not found",
        ),
        (
            "{secretTargetRef: [{parameter: p, name: creds, key: token}, {parameter: q, name: creds, key: pw}]}",
            {},
            "TriggerAuthentication default/auth: secretTargetRef[1]: Secret default/creds has no key 'pw'",
        ),
        (
            "{configMapTargetRef: [{parameter: p, name: nope, key: host}]}",
            {},
            "configMapTargetRef[0]: ConfigMap default/nope not found",
        ),
        (
            "{configMapTargetRef: [{parameter: p, name: settings, key: port}]}",
            {},
            "configMapTargetRef[0]: ConfigMap default/settings has no key 'port'",
        ),
        (
            "{env: [{parameter: p, name: PASSWORD}]}",
            {"OTHER": "do-not-print"},
            "env[0]: the scale target has no environment variable 'PASSWORD'",
        ),
        (
            "{env: [{parameter: p, name: PASSWORD}]}",
            None,
            "env[0] reads 'PASSWORD' from the scale target, which has no environment",
        ),
        (
            "{oauth2: {type: clientCredentials, clientId: c, tokenUrl: 'https://idp',"
            " clientSecret: {valueFrom: {secretKeyRef: {name: creds, key: nope}}}}}",
            {},
            "oauth2.clientSecret: Secret default/creds has no key 'nope'",
        ),
    ],
)
def test_missing_references_say_what_is_missing_but_not_secrets(
    spec: str, target_env: dict[str, str] | None, message: str
) -> None:
    store, so = auth_store(spec)
    with pytest.raises(SpecError) as caught:
        resolve_triggers_auth(so, store, target_env)
    error = caught.value
    assert error.obj == "ScaledObject default/so"
    assert error.field == "spec.triggers[0].authenticationRef"
    assert message in error.message
    assert "do-not-print" not in str(error) and "also-secret" not in str(error)


@pytest.mark.parametrize(
    ("spec", "unsupported"),
    [
        ("{podIdentity: {provider: aws}}", "podIdentity (provider aws)"),
        ("{podIdentity: {provider: azure-workload}}", "podIdentity (provider azure-workload)"),
        (
            "{hashiCorpVault: {address: 'https://v', authentication: token,"
            " secrets: [{parameter: p, path: x, key: k}]}}",
            "hashiCorpVault",
        ),
        ("{azureKeyVault: {vaultUri: 'https://v', secrets: [{parameter: p, name: n}]}}", "azureKeyVault"),
        ("{gcpSecretManager: {secrets: [{parameter: p, id: i}]}}", "gcpSecretManager"),
        ("{awsSecretManager: {secrets: [{parameter: p, name: n}]}}", "awsSecretManager"),
        ("{filePath: params.json}", "filePath"),
        ("{boundServiceAccountToken: [{parameter: p, serviceAccountName: sa}]}", "boundServiceAccountToken"),
    ],
)
def test_providers_that_need_a_cloud_or_cluster_are_refused_locally(spec: str, unsupported: str) -> None:
    store, so = auth_store(spec)
    ta = store.get(TriggerAuthentication, "default", "auth")
    assert ta is not None
    assert unsupported_auth_providers(ta.spec) == [unsupported]
    with pytest.raises(SpecError) as caught:
        resolve_triggers_auth(so, store, {})
    assert f"{unsupported} cannot be resolved when running locally" in caught.value.message


def test_pod_identity_none_is_kedas_default_and_needs_nothing() -> None:
    store, so = auth_store(
        "{podIdentity: {provider: none}, configMapTargetRef: [{parameter: host, name: settings, key: host}]}"
    )
    assert resolve_triggers_auth(so, store) == [ResolvedAuth(params={"host": "h"})]


def test_oauth2_is_resolved_like_keda_does() -> None:
    store, so = auth_store(
        "{oauth2: {type: clientCredentials, clientId: my-client, tokenUrl: 'https://idp.example/token',"
        " scopes: [read, write],"
        " tokenUrlParams: {audience: api, x: 'a b'},"
        " clientSecret: {valueFrom: {secretKeyRef: {name: creds, key: token}}}}}"
    )
    [auth] = resolve_triggers_auth(so, store)
    assert auth.params == {
        "oauthTokenURI": "https://idp.example/token",
        "clientID": "my-client",
        "clientSecret": "also-secret",
        "scopes": "read,write",
        "endpointParams": "audience=api&x=a+b",
    }
    assert auth.secret_values == frozenset({"also-secret"})


# --- environment of targets -------------------------------------------------------------------------

ENV_STORE = """
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: pw, user: bob}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {HOST: db.local, PORT: "5432"}
---
apiVersion: ebb.dev/v1alpha1
kind: ProcessGroup
metadata: {name: app}
spec:
  command: [app]
  envFrom:
  - configMapRef: {name: settings}
  - secretRef: {name: creds}
    prefix: DB_
  - secretRef: {name: absent, optional: true}
  env:
  - {name: PORT, value: "6543"}
  - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
  - {name: URL, value: "postgres://$(DB_user)@$(HOST):$(PORT)/$(UNKNOWN)?cost=$$5"}
  - {name: MISSING, valueFrom: {configMapKeyRef: {name: settings, key: nothing, optional: true}}}
  - {name: NUMBER, value: 7}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {name: job}
spec:
  envSourceContainerName: main
  jobTargetRef:
    template:
      spec:
        containers:
        - name: sidecar
          env: [{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        - name: main
          command: [work]
          env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: user}}}]
  triggers: [{type: redis, metadata: {listName: q}}]
"""


@pytest.fixture(scope="module")
def env_store() -> ResourceSet:
    result = load_text(ENV_STORE)
    assert result.errors == []
    return result.resources


def test_process_group_env_follows_kubernetes(env_store: ResourceSet) -> None:
    group = env_store.get(ProcessGroup, "default", "app")
    assert group is not None
    env = resolve_env(group, env_store)
    assert dict(env) == {
        "HOST": "db.local",
        "PORT": "6543",
        "DB_password": "pw",
        "DB_user": "bob",
        "PASSWORD": "pw",
        "URL": "postgres://bob@db.local:6543/$(UNKNOWN)?cost=$5",
        "NUMBER": "7",
    }
    assert env.secret_values == frozenset({"pw", "bob"})


@pytest.mark.parametrize(
    ("env_yaml", "field", "message"),
    [
        (
            "[{name: A, valueFrom: {secretKeyRef: {name: creds, key: nope}}}]",
            "spec.env[0].valueFrom.secretKeyRef",
            "Secret default/creds has no key 'nope'",
        ),
        (
            "[{name: A, value: x}, {name: B, valueFrom: {configMapKeyRef: {name: gone, key: k}}}]",
            "spec.env[1].valueFrom.configMapKeyRef",
            "ConfigMap default/gone not found",
        ),
    ],
)
def test_missing_env_references_name_the_entry(env_yaml: str, field: str, message: str) -> None:
    text = ENV_STORE.split("---\napiVersion: ebb.dev")[0] + (
        f"---\napiVersion: ebb.dev/v1alpha1\nkind: ProcessGroup\nmetadata: {{name: g}}\n"
        f"spec: {{command: [x], env: {env_yaml}}}\n"
    )
    result = load_text(text)
    assert result.errors == []
    group = result.of(ProcessGroup)[0]
    with pytest.raises(SpecError) as caught:
        resolve_env(group, result.resources)
    assert (caught.value.obj, caught.value.field, caught.value.message) == ("ProcessGroup default/g", field, message)


def test_missing_env_from_source_is_an_error_unless_optional() -> None:
    text = (
        "apiVersion: ebb.dev/v1alpha1\nkind: ProcessGroup\nmetadata: {name: g}\n"
        "spec: {command: [x], envFrom: [{secretRef: {name: gone}}]}\n"
    )
    result = load_text(text)
    with pytest.raises(SpecError) as caught:
        resolve_env(result.of(ProcessGroup)[0], result.resources)
    assert (caught.value.field, caught.value.message) == ("spec.envFrom[0].secretRef", "Secret default/gone not found")


def test_scaled_job_env_comes_from_the_env_source_container(env_store: ResourceSet) -> None:
    job = env_store.get(ScaledJob, "default", "job")
    assert job is not None
    assert dict(resolve_env(job, env_store)) == {"TOKEN": "bob"}
    with pytest.raises(SpecError) as caught:
        resolve_env(job, env_store, container="sidecar")
    assert caught.value.field == "spec.jobTargetRef.template.spec.containers[0].env[0].valueFrom.fieldRef"
    with pytest.raises(SpecError, match="no container named 'ghost'"):
        resolve_env(job, env_store, container="ghost")


def test_env_resolved_from_a_process_group_feeds_trigger_auth(env_store: ResourceSet) -> None:
    text = """
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {name: from-env}
spec: {env: [{parameter: password, name: PASSWORD}, {parameter: host, name: HOST}]}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: app}
spec:
  scaleTargetRef: {kind: ProcessGroup, name: app}
  triggers: [{type: redis, metadata: {listName: q}, authenticationRef: {name: from-env}}]
"""
    objects = load_text(text).objects
    store = ResourceSet([*env_store, *objects])
    so = store.get(ScaledObject, "default", "app")
    assert so is not None
    group = store.scale_target(so)
    assert group is not None
    [auth] = resolve_triggers_auth(so, store, resolve_env(group, store))
    assert auth.params == {"password": "pw", "host": "db.local"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$(A)-x", "1-x"),
        ("$(A)$(B)", "12"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$1"),
        ("$(C)", "$(C)"),
        ("$(A", "$(A"),
        ("a$", "a$"),
        ("$x", "$x"),
        ("$()", "$()"),
        ("no refs", "no refs"),
        ("", ""),
    ],
)
def test_dollar_references_expand_as_kubernetes_does(value: str, expected: str) -> None:
    assert expand_references(value, {"A": "1", "B": "2"}) == expected
