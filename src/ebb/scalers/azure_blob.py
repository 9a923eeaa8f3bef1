"""`azure-blob`: KEDA's Azure Blob Storage scaler. The metric is the number of blobs in a container.

As KEDA (pkg/scalers/azure_blob_scaler.go):
- by default blobs are listed one level deep under `blobPrefix` + `blobDelimiter` (virtual folders are not
  counted, nor what is inside them);
- `recursive: "true"` drops the delimiter and counts every blob under the prefix;
- `globPattern` lists every blob under the prefix and counts those whose whole name matches the pattern
  (gobwas/glob syntax without separators: `*` also matches `/`; `?`, `[a-z]`, `[!a-z]`, `{a,b}`).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from azure.storage.blob.aio import BlobPrefix, ContainerClient

from ebb.scalers._azure_storage import AzureStorageMetadata, AzureStorageScaler
from ebb.scalers.base import MetricSpec, ScalerMetadata, ScalerReading, TriggerContext, activity, metric_name, param


class AzureBlobMetadata(AzureStorageMetadata):
    blob_container_name: str = param(name="blobContainerName", min_length=1)
    blob_count: int = param(5, name="blobCount", gt=0, description="> 0, blobs per replica")
    activation_blob_count: int = param(0, name="activationBlobCount")
    blob_delimiter: str = param("/", name="blobDelimiter")
    blob_prefix: str | None = param(None, name="blobPrefix")
    recursive: bool = param(False, name="recursive")
    glob_pattern: str | None = param(None, name="globPattern")


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """A gobwas/glob pattern compiled without separators, as a regex over the whole name.

    ValueError when a `[` or `{` is not closed or a `}` has no opening brace.
    """
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 >= len(pattern):
                raise ValueError("the pattern ends with an unfinished escape `\\`")
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            while i + 1 < len(pattern) and pattern[i + 1] == "*":
                i += 1
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1 or end == i + 1:
                raise ValueError(f"`[` at position {i + 1} is not closed")
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            if not body:
                raise ValueError(f"`[!]` at position {i + 1} is empty")
            parts = "".join(re.escape(ch) if ch != "-" else "-" for ch in body)
            out.append(f"[{'^' if negate else ''}{parts}]")
            i = end
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}":
            if depth == 0:
                raise ValueError(f"`}}` at position {i + 1} has no opening `{{`")
            depth -= 1
            out.append(")")
        elif c == "," and depth > 0:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    if depth:
        raise ValueError("a `{` is not closed")
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as exc:
        raise ValueError(str(exc)) from None


class AzureBlobScaler(AzureStorageScaler):
    """Scales on the number of blobs in a container; `blobCount` blobs per replica."""

    type_name: ClassVar[str] = "azure-blob"
    Metadata: ClassVar[type[ScalerMetadata]] = AzureBlobMetadata
    service: ClassVar[Literal["blob"]] = "blob"
    meta: AzureBlobMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        # KEDA's Validate: recursive drops the delimiter; a prefix gets the delimiter appended.
        self.delimiter = "" if self.meta.recursive else self.meta.blob_delimiter
        prefix = self.meta.blob_prefix or ""
        self.prefix = prefix + self.delimiter if prefix and self.delimiter else prefix
        self.glob: re.Pattern[str] | None = None
        if self.meta.glob_pattern:
            # Blob names never start with "/": a path-style pattern would match nothing.
            try:
                self.glob = glob_to_regex(self.meta.glob_pattern.removeprefix("/"))
            except ValueError as exc:
                self.bad("globPattern", f"invalid glob pattern: {exc}")

    def make_client(self) -> ContainerClient:
        assert self.meta.connection is not None
        return ContainerClient.from_connection_string(
            self.meta.connection, self.meta.blob_container_name, **self.client_options()
        )

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, f"azure-blob-{self.meta.blob_container_name}"),
            target=float(self.meta.blob_count),
            metric_type=self.ctx.metric_type,
        )

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["blobDelimiter"] = self.delimiter
        return out

    async def read(self) -> ScalerReading:
        count = await self.call(self._count, f"container {self.meta.blob_container_name!r}")
        return ScalerReading(value=float(count), active=activity(count, self.meta.activation_blob_count))

    async def _count(self, client: Any) -> int:
        prefix = self.prefix or None
        count = 0
        if self.glob is not None:
            async for blob in client.list_blobs(name_starts_with=prefix):
                if self.glob.fullmatch(blob.name):
                    count += 1
            return count
        if not self.delimiter:
            async for _ in client.list_blobs(name_starts_with=prefix):
                count += 1
            return count
        async for item in client.walk_blobs(name_starts_with=prefix, delimiter=self.delimiter):
            if not isinstance(item, BlobPrefix):
                count += 1
        return count
