"""The private core: config, the run store, the pipeline, the CLI, the contracts' implementation.

Nothing here is a promise to a plugin author: plugins (the built-ins included) import
:mod:`harness.api` only, and a test enforces it. Modules here may move or change between
releases, as pytest's ``_pytest`` does under ``pytest``.
"""
