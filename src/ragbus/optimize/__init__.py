"""Compiling the RAG generate program against examples: ``ragbus optimize``.

:mod:`.trainset` reads and splits examples (and turns exported answers and dead letters
into examples), :mod:`.metrics` scores answers (exact match, F1, an LM judge),
:mod:`.compiler` evaluates the program and compiles it with a DSPy optimizer.
"""
