"""ebb: an event-driven autoscaler. KEDA's model, in Python, for Kubernetes and for local processes."""

from importlib.metadata import PackageNotFoundError, version

#: The name ebb is published under (`pip install ebb-autoscaler`); the import and the command are `ebb`.
DISTRIBUTION = "ebb-autoscaler"

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+local"
