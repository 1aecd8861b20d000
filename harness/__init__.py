"""harness: a plugin-based, evaluation-driven experimentation harness for RLHF."""
from harness._core.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
