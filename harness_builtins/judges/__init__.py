"""Judges: who decides which of two responses is better (``register_judges``).

``gold`` (the world's gold judge) and ``reward`` (the run's reward source) in :mod:`.scored`,
``llm`` (an LLM over an OpenAI-compatible API asked which of two responses is better) in
:mod:`.pairwise_llm` and ``llm_score`` (the same, grading each response 1–10; the ``llm_judge``
reward source builds it by name) in :mod:`.scoring_llm`; both send their requests through
:mod:`.client`.
"""
