"""Models in and out: loading by name (``embedded:<name>``, a local directory or a hub id, all via
``from_pretrained``) and saving in the same HF format, atomically."""
from __future__ import annotations

from pathlib import Path

from harness._core.checks import hub_model_problem
from harness._core.errors import HarnessError
from harness._core.io import atomic_directory


def resolve_base(hook, base: str, experiment) -> str | Path:
    """Ask the plugins (a world answers ``embedded:…``); the core's fallback returns paths/hub ids as they are."""
    return hook.resolve_model(base=base, experiment=experiment)


def load_causal_lm(path: str | Path, *, trainable: bool = False):
    """(model, tokenizer) from an HF directory or hub id; eval mode unless ``trainable``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not Path(path).expanduser().is_dir():  # a hub id: ask once, quickly, before from_pretrained retries for a minute
        problem = hub_model_problem(str(path), "model")
        if problem:
            raise HarnessError(problem)
    from safetensors import SafetensorError

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path))
    except (OSError, ValueError, SafetensorError) as err:  # a missing, truncated or unknown-model_type model
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise HarnessError(
            f"cannot load model {str(path)!r}: {reason.rstrip('.')}. Use 'embedded:<name>', a local directory saved "
            f"with save_pretrained, or a hub id reachable from this machine."
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.train(trainable)
    return model, tokenizer


def save_model(model, tokenizer, path: Path) -> None:
    """``save_pretrained`` model + tokenizer into ``path`` atomically: a reader never sees half a model, and
    :func:`load_causal_lm` loads it back (a reward model: ``save_reward_model``, which adds its offset)."""
    with atomic_directory(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
