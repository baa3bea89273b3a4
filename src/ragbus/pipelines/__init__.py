"""The built-in pipelines, as values: ``rag`` (the default) and ``analyzer``.

Commands load them by name (``--app rag``) through :func:`ragbus.apps.load_app`; import
them from here only in code that means that pipeline.
"""
