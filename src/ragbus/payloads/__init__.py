"""The payload models of ragbus's built-in pipelines, one module per pipeline.

A payload is the typed body of one event type; a pipeline registers each model under
its event type's name (see ``ragbus.Pipeline``). Handlers import these models; the
bus and the runtime never do.
"""
