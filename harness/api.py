"""The plugin author's API: everything a plugin (a built-in or a third party's) may import from harness.

This is the one public module, as ``pytest`` is over ``_pytest``: the names below are a promise,
the modules behind them (``harness._core``, ``harness._online``) are not and may move. A test fails
when a built-in plugin or the tutorial plugin imports anything else of harness. docs/plugins.md
documents each name with its signature.

- **hooks**: :data:`hookimpl`.
- **contracts** (Protocols a component implements or tests for) and the **records** that flow
  between stages: :class:`Prompt`, :class:`FeedbackRecord`, :class:`Cell`, …; ``Options``/``NoOptions``
  (every component's typed options).
- **errors**: :class:`HarnessError` (a mistake the user can fix: one line, exit 1) and its kinds that
  exit 2, :class:`ConfigError` (an experiment that does not validate) and :class:`CorruptFileError` (a
  file harness wrote that does not parse); :class:`TrainingDiverged` (a stage whose loss or weights went
  non-finite).
- **files**: atomic writes and tolerant reads (:func:`atomic_write_json`, :func:`read_jsonl`, …); checkpoints
  written with checksums and resumed only when intact (:func:`checkpoint_directory`, :func:`latest_intact`).
- **models and text**: loading and saving a causal LM, seeding a training stage, the chat encoding,
  padding, generation and log-probs.
- **compute**: ``[compute]``'s options, the accelerator, DeepSpeed for trainers, the process group.
- **statistics**: win-rate intervals, correlation, smoothing, distinct-n; inter-annotator agreement; the
  statistics over seeds (a mean's two-level bootstrap interval, a paired difference with P(A > B), the
  draws themselves).
- **reward models**: the artifact a reward-model stage saves and every reward source reads (the HF
  directory, its normalization offset, ensemble members) and how a reward is read from it.
- **feedback formats**: the base class and the helpers the built-in formats share.
- **building**: validating a component's inline options (a component that wraps another).
- **the online toolkit**: rollout → advantages → update → β, the loop, checkpoints, the summary
  (an online optimizer is its options and its step; see :class:`OnlineOptimizer`).
- **running**: :func:`load_experiment`, :func:`run_experiment` (a command plugin that runs experiments).
- **testing a plugin**: :func:`get_plugin_manager` (a manager with exactly the plugins a test names; its
  ``registry`` is what :func:`load_experiment` takes) and :func:`build_component` (a component built from
  options as a run builds it).
"""
from __future__ import annotations

from harness._core.agreement import (cohen_kappa, fleiss_kappa, kendall_tau, krippendorff_alpha, pair_agreement,
                                     percent_agreement)
from harness._core.building import build_component, validate_component_tables, validate_inline_component
from harness._core.compute import (ComputeOptions, accelerator_for, adamw, check_mixed_precision,
                                   enable_activation_checkpointing, trainer_deepspeed_config, zero_stage_of)
from harness._core.config import load_experiment
from harness._core.contracts import (Annotator, CompareMany, Components, DescribedEvaluator, Evaluator, ExplainedJudge,
                                     ExplainingJudge, FeedbackFormat, GoldJudge, GradingJudge, Judge, NotingComponent,
                                     Offloadable, PlottingComponent, PolicyOptimizer, PolicySampler, RecordedFeedback,
                                     RewardSource, SamplingOptimizer, Stage, StageContext, WithDiagnostics,
                                     WithMemberScores, World)
from harness._core.distributed import (all_reduce_sum, gather_objects, is_main_process, rank, shared_directory,
                                       single_process_defaults, world_size)
from harness._core.divergence import TrainingDiverged
from harness._core.errors import ConfigError, CorruptFileError, HarnessError
from harness._core.evaluation import sample_texts
from harness._core.feedback import (FeedbackFormatBase, FeedbackOptions, Pair, check_range, pair_labels_by_unit,
                                    pairs_from_order)
from harness._core.generation import (ensure_pad, generate_responses, pad_id_of, pad_right, response_forward,
                                      response_inputs, sequence_logprobs, token_logprobs, unwrap_model)
from harness._core.hookspecs import hookimpl
from harness._core.integrity import checkpoint_directory, latest_intact, write_checksums
from harness._core.io import atomic_directory, atomic_write_json, atomic_write_text, read_json, read_jsonl
from harness._core.models import load_causal_lm, resolve_base, save_model
from harness._core.options import NoOptions, Options
from harness._core.packing import Packed, pack, packable
from harness._core.plugins import get_plugin_manager
from harness._core.records import (FEEDBACK_FILE, Cell, Demonstration, EvalSamples, FeedbackRecord, Plot,
                                   PreferenceGroup, Prompt, ReportRun, Split, read_feedback)
from harness._core.reward_models import (group_rewards, load_reward_model, load_reward_tokenizer, member_dirs,
                                         read_offset, reward_model_dir, reward_sequence, save_reward_model,
                                         score_texts, sequence_rewards)
from harness._core.runner import run_experiment
from harness._core.secrets import scrub, scrub_data
from harness._core.seed_stats import paired_difference, two_level_draws, variant_summary
from harness._core.seeding import seed_everything
from harness._core.stats import SMOOTH, distinct_n, moving_average, pearson, rate_interval, smooth
from harness._core.report_points import VariantPoint, variant_points
from harness._core.text import encode_prompt, encode_response
from harness._online import *  # noqa: F403  (the toolkit's own __all__ is its public part)
from harness._online import __all__ as _online_names

__all__ = [
    # hooks
    "hookimpl",
    # contracts and records
    "Annotator", "Cell", "CompareMany", "Components", "Demonstration", "DescribedEvaluator", "EvalSamples", "Evaluator",
    "ExplainedJudge", "ExplainingJudge", "FEEDBACK_FILE", "FeedbackFormat", "FeedbackRecord", "GoldJudge",
    "GradingJudge", "Judge", "NoOptions", "NotingComponent", "Offloadable", "Options", "Plot", "PlottingComponent",
    "PolicyOptimizer", "PolicySampler", "PreferenceGroup", "Prompt", "RecordedFeedback", "ReportRun", "RewardSource",
    "SamplingOptimizer", "Split", "Stage", "StageContext", "WithDiagnostics", "World", "read_feedback",
    "WithMemberScores",
    # errors
    "ConfigError", "CorruptFileError", "HarnessError",
    "TrainingDiverged",
    # files
    "atomic_directory", "atomic_write_json", "atomic_write_text", "read_json", "read_jsonl",
    "checkpoint_directory", "latest_intact", "write_checksums",
    # models, text, generation
    "encode_prompt", "encode_response", "generate_responses", "load_causal_lm", "pad_id_of", "resolve_base",
    "response_forward", "response_inputs", "sample_texts", "sequence_logprobs", "token_logprobs", "unwrap_model",
    "ensure_pad", "pad_right", "Packed", "pack", "packable",
    "save_model", "seed_everything",
    # compute and processes
    "ComputeOptions", "accelerator_for", "adamw", "all_reduce_sum", "check_mixed_precision", "enable_activation_checkpointing",
    "gather_objects", "is_main_process", "rank", "shared_directory", "single_process_defaults",
    "trainer_deepspeed_config", "world_size", "zero_stage_of",
    # statistics, secrets
    "SMOOTH", "moving_average", "pearson", "rate_interval", "scrub", "scrub_data", "smooth",
    "VariantPoint", "variant_points",
    "paired_difference", "two_level_draws", "variant_summary",
    "distinct_n",
    "cohen_kappa", "fleiss_kappa", "kendall_tau", "krippendorff_alpha", "pair_agreement", "percent_agreement",
    # reward models (the artifact a reward-model stage saves and reward sources read)
    "group_rewards", "load_reward_model", "load_reward_tokenizer", "member_dirs", "read_offset", "reward_model_dir",
    "reward_sequence", "save_reward_model", "score_texts", "sequence_rewards",
    # feedback formats, building components
    "FeedbackFormatBase", "FeedbackOptions", "Pair", "check_range", "pair_labels_by_unit", "pairs_from_order",
    "validate_component_tables", "validate_inline_component",
    # running experiments
    "load_experiment", "run_experiment",
    # testing a plugin
    "build_component", "get_plugin_manager",
    # the online toolkit
    *_online_names,
]
