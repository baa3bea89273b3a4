"""The RAG pipeline's handlers, built as a worker builds them, for the anchors to call."""

from __future__ import annotations

from ragbus.config import Settings
from ragbus.pipeline import StageContext
from ragbus.pipelines.rag import pipeline
from ragbus.runtime.stage import Handler
from ragbus.stage_build import build_stage


def rag_handlers(settings: Settings) -> tuple[Handler, Handler]:
    """The retrieve and generate handlers of the RAG pipeline, configured by ``settings``."""
    retrieve, generate = (
        build_stage(spec, StageContext(pipeline=pipeline, stage=spec, settings=settings)).handler
        for spec in pipeline.stages.values()
    )
    return retrieve, generate
