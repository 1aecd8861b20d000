"""The ``[world.hf_data]`` table: one source table per kind of data, each with a column mapping.

A source is a hub dataset id or a local file; ``columns`` maps the *roles* a table needs
(``prompt``, ``response``, ``chosen``, …) to the dataset's column names, each role defaulting
to a column of its own name. Everything here is plain validation: nothing is read or
downloaded until a run asks the world for data (so ``harness validate`` works offline).
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from harness.api import Options

FeedbackKind = Literal["pairwise", "ranking", "rating"]

# format -> roles a row needs (the prompt is derived from the transcripts when hh_format is on)
FEEDBACK_ROLES: dict[str, tuple[str, ...]] = {
    "pairwise": ("prompt", "chosen", "rejected"),
    "ranking": ("prompt", "responses", "ranking"),
    "rating": ("prompt", "response", "rating"),
}
DEFAULT_TEMPLATE = "Human: {prompt}\n\nAssistant:"
TOKENIZER_TEMPLATE = "tokenizer"
# a ``path`` with one of these suffixes is a local file, read by this ``datasets`` builder; any other is a hub id
# (or a local dataset directory)
LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


class SourceTable(Options):
    """Where one table of data comes from and which columns hold what."""

    path: str = Field(..., min_length=1, description=(
        "Hub dataset id (e.g. 'Anthropic/hh-rlhf') or a local .jsonl/.json/.parquet/.csv file or dataset "
        "directory."))
    split: str = Field("train", description=(
        "Split to read; a local file is the split 'train'. Slices like 'train[:2000]' work too."))
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to pin; not used for local files.")
    data_dir: str | None = Field(None, description=(
        "Subdirectory of a hub dataset, e.g. 'helpful-base' of Anthropic/hh-rlhf."))
    limit: int | None = Field(None, ge=1, description="Read at most this many rows (the first ones).")
    columns: dict[str, str] = Field(default_factory=dict, description=(
        "Role -> column name; a role not listed reads the column of its own name."))

    optional_roles: ClassVar[tuple[str, ...]] = ()

    def roles(self) -> tuple[str, ...]:
        """The roles every row must have."""
        raise NotImplementedError

    def column(self, role: str) -> str:
        return self.columns.get(role, role)

    @model_validator(mode="after")
    def _known_roles(self):
        allowed = (*self.roles(), *self.optional_roles)
        unknown = sorted(set(self.columns) - set(allowed))
        if unknown:
            hint = " (with hh_format = true the prompt is the transcripts' shared prefix, not a column)" if (
                "prompt" in unknown and getattr(self, "hh_format", False)) else ""
            raise ValueError(f"columns: unknown role {', '.join(map(repr, unknown))}; roles of this table: "
                             f"{', '.join(allowed)}{hint}")
        return self


class ChatSourceTable(SourceTable):
    """A source whose rows may be Anthropic HH transcripts instead of separate prompt/response columns."""

    hh_format: bool = Field(False, description=(
        "Columns hold whole '\\n\\nHuman: … \\n\\nAssistant: …' transcripts; the prompt is everything "
        "before the final 'Assistant:'."))


class DemonstrationTable(ChatSourceTable):
    """``[world.hf_data.sft]``: prompt/response demonstrations for SFT."""

    def roles(self) -> tuple[str, ...]:
        return ("response",) if self.hh_format else ("prompt", "response")


class PromptTable(ChatSourceTable):
    """``[world.hf_data.rl]`` / ``[world.hf_data.eval]``: prompts only (an HH transcript loses its last reply)."""

    def roles(self) -> tuple[str, ...]:
        return ("prompt",)


class FeedbackTable(ChatSourceTable):
    """``[world.hf_data.feedback]``: recorded human feedback in one of three formats."""

    format: FeedbackKind = Field(..., description=(
        "pairwise: prompt/chosen/rejected; ranking: prompt/responses (list)/ranking (indices "
        "best→worst); rating: prompt/response/rating, one row per rated response."))
    optional_roles: ClassVar[tuple[str, ...]] = ("annotator",)

    def roles(self) -> tuple[str, ...]:
        roles = FEEDBACK_ROLES[self.format]
        return roles[1:] if self.hh_format else roles


class TextTable(SourceTable):
    """``[world.hf_data.pretraining]``: plain text for PPO-ptx and held-out perplexity."""

    heldout_fraction: float = Field(0.05, ge=0.0, lt=1.0, description=(
        "Share of the rows (the last ones) kept as the 'heldout' corpus split."))

    def roles(self) -> tuple[str, ...]:
        return ("text",)


class HFDataOptions(Options):
    """The ``[world.hf_data]`` table."""

    feedback: FeedbackTable = Field(..., description=(
        "Recorded human feedback: trains the reward model (and DPO); its prompts are the 'rm' split."))
    sft: DemonstrationTable | None = Field(None, description=(
        "SFT demonstrations; absent: the preferred response of each 'rm' feedback item."))
    rl: PromptTable | None = Field(None, description=(
        "Prompts for policy optimization; absent: feedback prompts (see rl_fraction)."))
    eval: PromptTable | None = Field(None, description=(
        "Held-out evaluation prompts; absent: a share of the feedback prompts (see eval_fraction)."))
    pretraining: TextTable | None = Field(None, description="Pretraining text for PPO-ptx (ptx_coef > 0 needs it).")
    rl_fraction: float = Field(0.0, ge=0.0, lt=1.0, description=(
        "Without [rl]: share of feedback prompts held out for RL only; 0 = RL on the 'rm' prompts (usual "
        "for HH)."))
    eval_fraction: float = Field(0.05, gt=0.0, lt=1.0, description=(
        "Without [eval]: share of feedback prompts held out for evaluation (their feedback and "
        "demonstrations are dropped)."))
    chat_template: str = Field(DEFAULT_TEMPLATE, description=(
        "Text the model is conditioned on: a format string with {prompt}, or 'tokenizer' for the "
        "tokenizer's chat template."))
    tokenizer: str | None = Field(None, description=(
        "With chat_template = 'tokenizer': local dir or hub id whose chat template is applied (usually "
        "[model] base)."))

    @model_validator(mode="after")
    def _template(self):
        if self.chat_template == TOKENIZER_TEMPLATE:
            if not self.tokenizer:
                raise ValueError("chat_template = 'tokenizer' needs tokenizer = '<local dir or hub id>' "
                                 "(usually the same as [model] base)")
        elif "{prompt}" not in self.chat_template:
            raise ValueError(f"chat_template = {self.chat_template!r} has no {{prompt}} placeholder; "
                             f"e.g. {DEFAULT_TEMPLATE!r}, or 'tokenizer'")
        return self
