"""The default pipeline: retrieval-augmented question answering.

``query_received -> [retrieve] -> documents_retrieved -> [generate] -> answer_generated``
"""

from __future__ import annotations

import dspy

from ragbus.config import Settings
from ragbus.events import EventType
from ragbus.handlers import Emit, GenerateHandler, RetrieveHandler
from ragbus.lm import build_lm
from ragbus.retrieval import CorpusLimits, SearchIndex, load_index
from ragbus.runtime.stage import Stage

RETRIEVE = "retrieve"
GENERATE = "generate"

#: Stage names in pipeline order.
STAGE_NAMES = (RETRIEVE, GENERATE)

#: Where the pipeline's answers are kept for consumers that come later: the sink's name
#: and the event types it keeps (RabbitMQ: the bounded queue ``ragbus.answers``).
SINKS: dict[str, tuple[str, ...]] = {"answers": (EventType.ANSWER_GENERATED,)}


def rag_pipeline(
    settings: Settings,
    *,
    index: SearchIndex | None = None,
    lm: dspy.LM | None = None,
    emit: Emit | None = None,
) -> list[Stage]:
    """The retrieve and generate stages, configured from ``settings``.

    Parameters:
        settings: corpus, LM, concurrency, timeouts and attempts.
        index: a prebuilt index (default: ``load_index(settings.corpus)``).
        lm: the ``dspy.LM`` to generate with (default: ``build_lm(settings)``).
        emit: publishes transient events; with it the generate stage streams each
            answer as ``answer_token`` events (default: none, no streaming). Pass the
            bus's transient publish (``ragbus.bus.base.emitter(bus)``).
    """
    if index is None:
        index = load_index(settings.corpus, limits=CorpusLimits.from_settings(settings))
    retrieve = RetrieveHandler(index, default_k=settings.top_k)
    generate = GenerateHandler(lm if lm is not None else build_lm(settings), emit=emit)
    return [
        Stage(
            name=RETRIEVE,
            consumes=(EventType.QUERY_RECEIVED,),
            handler=retrieve,
            concurrency=settings.concurrency,
            timeout_s=settings.stage_timeout_s,
            max_attempts=settings.max_attempts,
            fingerprint=retrieve.fingerprint,
            dependency="retriever",
        ),
        Stage(
            name=GENERATE,
            consumes=(EventType.DOCUMENTS_RETRIEVED,),
            handler=generate,
            concurrency=settings.concurrency,
            timeout_s=settings.stage_timeout_s,
            max_attempts=settings.max_attempts,
            fingerprint=generate.fingerprint,
            dependency="lm",
        ),
    ]
