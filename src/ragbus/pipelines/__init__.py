"""Pipelines: which handler consumes which event type, as data."""

from ragbus.pipelines.rag import GENERATE, RETRIEVE, rag_pipeline

__all__ = ["GENERATE", "RETRIEVE", "rag_pipeline"]
