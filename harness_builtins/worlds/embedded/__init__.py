"""The embedded world: a deterministic, offline, simulated InstructGPT small enough for a 2-core CPU.

Modules, one job each: ``facts`` (the seeded world), ``prompts`` (task kinds and splits),
``responses`` (demonstrators and candidate writers), ``rubric`` (reading a response),
``gold`` (ground truth), ``annotators`` (simulated people), ``corpus`` (pretraining text),
``model`` (tokenizer + tiny Llama, cached), ``lm_eval_tasks``, ``world`` (``EmbeddedWorld``),
``stats`` + ``cli`` (``harness world stats``) and ``plugin`` (the hooks).
"""
from .world import EmbeddedOptions, EmbeddedWorld

__all__ = ["EmbeddedOptions", "EmbeddedWorld"]
