"""The one secret-scrubbing rule for everything the harness prints or writes about a config.

API keys come from the environment and are never written anywhere — but users paste them
where a variable *name* belongs (``api_key_env = "sk-…"``), into a ``--set`` value, or into
an error a library raises. So every error line, manifest error, results marker, stored
config and ``validate --show`` goes through here:

- a value of a field whose name says it holds a secret (``api_key``, ``token``, ``password``,
  ``secret`` …; not ``api_key_env``, which names a variable) is masked whole;
- any string shaped like a key (``sk-…``, ``gsk_…``, ``hf_…``, ``xai-…``, ``AIza…``, ``Bearer …``,
  a long run of mixed letters and digits) is masked wherever it appears.
"""
from __future__ import annotations

import re
from typing import Any

MASK = "***"
SECRET_FIELD = re.compile(r"(^|_)(api_?key|secret|token|password|passwd|credentials?)$", re.IGNORECASE)
KEY_SHAPED = re.compile(
    r"(?:\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{6,}"  # OpenAI, Anthropic, OpenRouter (sk-…, sk-proj-…, sk-ant-…, sk-or-…)
    r"|\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"  # Stripe
    r"|\bhf_[A-Za-z0-9]{10,}"  # Hugging Face tokens
    r"|\bgsk_[A-Za-z0-9]{20,}"  # Groq
    r"|\b(?:xai|pplx|csk)-[A-Za-z0-9]{20,}"  # xAI, Perplexity, Cerebras (a model name like xai-grok-2 is not one)
    r"|\bnvapi-[A-Za-z0-9_\-]{20,}"  # NVIDIA
    r"|\br8_[A-Za-z0-9]{20,}"  # Replicate
    r"|\bAIza[0-9A-Za-z_\-]{20,}"  # Google API keys (Gemini, …)
    r"|\bya29\.[0-9A-Za-z_\-]{10,}"  # Google OAuth access tokens
    r"|\b(?:ghp|gho|ghs|ghu|ghr|github_pat|glpat|xox[abpr])[_-][A-Za-z0-9_\-]{10,}"  # GitHub, GitLab, Slack
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{12,}"  # AWS access key ids
    r"|(?<=Bearer )[A-Za-z0-9._~+/\-]{8,}=*"  # an Authorization header's value
    r"|\b(?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[a-z])(?=[A-Za-z0-9]*[A-Z])[A-Za-z0-9]{32,}\b)"  # long mixed-case token
)


def scrub(text: str) -> str:
    """``text`` with every key-shaped substring replaced by ``***``."""
    return KEY_SHAPED.sub(MASK, text)


def is_secret_field(name: str) -> bool:
    return bool(SECRET_FIELD.search(str(name)))


def scrub_data(data: Any, field: str = "") -> Any:
    """A copy of ``data`` (dicts, lists, strings) with secret fields and key-shaped strings masked."""
    if isinstance(data, dict):
        return {k: scrub_data(v, str(k)) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(scrub_data(v, field) for v in data)
    if isinstance(data, str):
        return MASK if data and is_secret_field(field) else scrub(data)
    return data
