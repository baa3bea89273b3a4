"""What an operator sees of ragbus besides metrics: traces and structured logs.

- :mod:`ragbus.observability.tracing`: OpenTelemetry spans for publishing, each stage's
  handling, the LM call and retrieval, linked across processes through the envelope's
  W3C ``trace`` field;
- :mod:`ragbus.observability.event_context`: the event a log line is about
  (correlation id, event id, stage, attempt, worker id), kept in a context variable;
- :mod:`ragbus.observability.logs`: text or JSON log lines carrying that context.
"""
