"""What wraps every handler: consumer loop, guards, retries, metrics."""

from ragbus.runtime.classify import BreakerOpenError, FailureClass, classify
from ragbus.runtime.consumer import StageConsumer
from ragbus.runtime.metrics import Metrics
from ragbus.runtime.runner import Runtime
from ragbus.runtime.stage import Handler, Stage

__all__ = [
    "BreakerOpenError",
    "FailureClass",
    "Handler",
    "Metrics",
    "Runtime",
    "Stage",
    "StageConsumer",
    "classify",
]
