"""KEDA's names for what ebb exports, in one place: the `scaler` label of an unnamed trigger, and the `type`
values of `keda_resource_registered_total`.

KEDA labels an unnamed trigger's series with its scaler's Go type name (`fmt.Sprintf("%T")` minus the package,
`pkg/scaling/scale_handler.go`); the table below is that name for every trigger type KEDA builds
(`pkg/scaling/scalers_builder.go`), read from kedacore/keda at 8b4f083 (August 2026). A trigger type that ebb
adds needs no change here when KEDA has it; one KEDA lacks gets `<camelCase type>Scaler`.
"""

from __future__ import annotations

#: `keda_resource_registered_total{type}` (KEDA's `metricscollector.*Resource` constants).
SCALED_OBJECT_RESOURCE = "scaled_object"
SCALED_JOB_RESOURCE = "scaled_job"
TRIGGER_AUTHENTICATION_RESOURCE = "trigger_authentication"
CLUSTER_TRIGGER_AUTHENTICATION_RESOURCE = "cluster_trigger_authentication"
CLOUD_EVENT_SOURCE_RESOURCE = "cloudevent_source"

#: Kind -> `keda_resource_registered_total{type}`.
RESOURCE_TYPES = {
    "ScaledObject": SCALED_OBJECT_RESOURCE,
    "ScaledJob": SCALED_JOB_RESOURCE,
    "TriggerAuthentication": TRIGGER_AUTHENTICATION_RESOURCE,
    "ClusterTriggerAuthentication": CLUSTER_TRIGGER_AUTHENTICATION_RESOURCE,
    "CloudEventSource": CLOUD_EVENT_SOURCE_RESOURCE,
    "ClusterCloudEventSource": CLOUD_EVENT_SOURCE_RESOURCE,
}

#: Kinds counted on loading, beside the scaled objects (which count themselves when they register).
COUNTED_RESOURCES = frozenset(RESOURCE_TYPES) - {"ScaledObject", "ScaledJob"}

#: Trigger type -> the name of KEDA's scaler for it (the `scaler` label when the trigger has no `name`).
KEDA_SCALER_NAMES: dict[str, str] = {
    "activemq": "activeMQScaler",
    "apache-kafka": "apacheKafkaScaler",
    "arangodb": "arangoDBScaler",
    "artemis-queue": "artemisScaler",
    "aws-cloudwatch": "awsCloudwatchScaler",
    "aws-dynamodb": "awsDynamoDBScaler",
    "aws-dynamodb-streams": "awsDynamoDBStreamsScaler",
    "aws-kinesis-stream": "awsKinesisStreamScaler",
    "aws-sqs-queue": "awsSqsQueueScaler",
    "azure-app-insights": "azureAppInsightsScaler",
    "azure-blob": "azureBlobScaler",
    "azure-data-explorer": "azureDataExplorerScaler",
    "azure-eventhub": "azureEventHubScaler",
    "azure-log-analytics": "azureLogAnalyticsScaler",
    "azure-monitor": "azureMonitorScaler",
    "azure-pipelines": "azurePipelinesScaler",
    "azure-queue": "azureQueueScaler",
    "azure-servicebus": "azureServiceBusScaler",
    "beanstalkd": "BeanstalkdScaler",
    "cassandra": "cassandraScaler",
    "clickhouse": "clickhouseScaler",
    "couchdb": "couchDBScaler",
    "cpu": "cpuMemoryScaler",
    "cron": "cronScaler",
    "datadog": "datadogScaler",
    "dynatrace": "dynatraceScaler",
    "elastic-forecast": "elasticForecastScaler",
    "elasticsearch": "elasticsearchScaler",
    "etcd": "etcdScaler",
    "external": "externalScaler",
    "external-mock": "externalMockScaler",
    "external-push": "externalPushScaler",
    "forgejo-runner": "forgejoRunnerScaler",
    "gcp-cloudtasks": "gcpCloudTasksScaler",
    "gcp-pubsub": "pubsubScaler",
    "gcp-spanner": "spannerScaler",
    "gcp-stackdriver": "stackdriverScaler",
    "gcp-storage": "gcsScaler",
    "github-runner": "githubRunnerScaler",
    "graphite": "graphiteScaler",
    "huawei-cloudeye": "huaweiCloudeyeScaler",
    "ibmmq": "ibmmqScaler",
    # KEDA picks influxDBScalerV3 when the trigger asks for InfluxDB 3; v2 is the default.
    "influxdb": "influxDBScaler",
    "kafka": "kafkaScaler",
    "kubernetes-resource": "kubernetesResourceScaler",
    "kubernetes-workload": "kubernetesWorkloadScaler",
    "liiklus": "liiklusScaler",
    "loki": "lokiScaler",
    "memory": "cpuMemoryScaler",
    "metrics-api": "metricsAPIScaler",
    "mongodb": "mongoDBScaler",
    "mssql": "mssqlScaler",
    "mysql": "mySQLScaler",
    "nats-jetstream": "natsJetStreamScaler",
    "new-relic": "newrelicScaler",
    "nsq": "nsqScaler",
    "opensearch": "opensearchScaler",
    "openstack-metric": "openstackMetricScaler",
    "openstack-swift": "openstackSwiftScaler",
    "postgresql": "postgreSQLScaler",
    "predictkube": "PredictKubeScaler",
    "prometheus": "prometheusScaler",
    "pulsar": "pulsarScaler",
    "rabbitmq": "rabbitMQScaler",
    "redis": "redisScaler",
    "redis-cluster": "redisScaler",
    "redis-cluster-streams": "redisStreamsScaler",
    "redis-sentinel": "redisScaler",
    "redis-sentinel-streams": "redisStreamsScaler",
    "redis-streams": "redisStreamsScaler",
    "selenium-grid": "seleniumGridScaler",
    "solace-direct-messaging": "SolaceDMScaler",
    "solace-event-queue": "SolaceScaler",
    "solarwinds": "solarWindsScaler",
    "solr": "solrScaler",
    "splunk": "SplunkScaler",
    "splunk-observability": "splunkObservabilityScaler",
    "sumologic": "sumologicScaler",
    "temporal": "temporalScaler",
}

#: Trigger types whose metrics are the HPA's resource metrics: KEDA exports only keda_scaler_active for them.
RESOURCE_TRIGGER_TYPES = frozenset({"cpu", "memory"})


def keda_scaler_name(trigger_type: str) -> str:
    """KEDA's scaler name for `trigger_type`; `<camelCase type>Scaler` for a type KEDA does not have."""
    known = KEDA_SCALER_NAMES.get(trigger_type)
    if known is not None:
        return known
    head, *rest = trigger_type.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest) + "Scaler"
