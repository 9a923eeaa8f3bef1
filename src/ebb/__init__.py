"""ebb: an event-driven autoscaler. KEDA's model, in Python, for Kubernetes and for local processes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ebb")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+local"
