"""Judges: who decides which of two responses is better (``register_judges``).

``gold`` (the world's gold judge) and ``reward`` (the run's reward source) in :mod:`.scored`,
``llm`` (an LLM over an OpenAI-compatible API) in :mod:`.pairwise_llm`, whose requests go through
:mod:`.client`, the endpoint client the ``llm_judge`` reward source shares.
"""
