"""The online-optimizer toolkit: what PPO, A2C and a plugin's online optimizer are written on.

Import from here (``from harness._online import ...``); the modules behind it are
internal and may move. An online optimizer is a ``step(run, step) -> metrics`` function in its
paper's order plus a class with ``mode = "online"`` whose ``train`` calls :func:`train_online`::

    def my_step(run: RLRun, step: int) -> dict[str, float]:
        batch = collect_rollout(run, step, samples_per_prompt=4)   # sample, score, log-probs, once
        ...                                                       # advantages and loss, your paper's way
        stats = apply_update(run, loss)                           # one clipped gradient step
        return rollout_metrics(run, batch, None, "mine") | stats  # reward/proxy, reward/gold, mine/kl, …

    class Mine:
        Options = MyOptions          # a subclass of OnlineOptions (critic, GAE) or GroupOptions (groups, no critic)
        mode = "online"

        def train(self, ctx, reward):
            return train_online(ctx, reward, self.options, "mine", my_step)

What the toolkit does, so an optimizer does not:

- **options** in three layers (:class:`RolloutOptions` ⊂ :class:`OnlineOptions` for an actor-critic,
  :class:`GroupOptions` for a group of samples per prompt and no critic): the options say which
  critic setup builds (``critic()``) and whether it loads a reference (``needs_reference()``).
- **setup from π_SFT** (:func:`setup`, called by :func:`train_online`): policy, frozen reference
  (none where the options need none: GRPO and RLOO with β = 0), critic (``value_model``; none for
  GroupOptions), AdamW, the β controller (``adaptive_kl``), PTX batches, the world's
  ``rl`` prompts and gold judge, all in an :class:`RLRun`; LoRA (reference = adapters off),
  frozen-model offloading, DeepSpeed/ZeRO, activation checkpointing and a multi-process launch
  come from the options and ``[compute]``, through accelerate.
- **rollout** (:func:`collect_rollout`): the step's prompts are a function of (seed, step) only, k
  samples per prompt in consecutive rows (a process holds whole groups), each response sampled from
  its own seed (seed, step, index); the reward source scores them; π_θ's log-probs, entropy and values and
  π_SFT's log-probs are computed once, without gradients (:class:`Rollout`; ``batch.kl`` is the
  per-sequence KL(π_θ‖π_SFT) estimate).
- **reference and KL**: ``per_token_rewards`` (−β·(log π_θ − log π_SFT) per token, the score on the
  last), ``k3`` (the always-positive KL estimator: GRPO's KL term, every ``approx_kl``),
  ``kl_controller`` (adaptive β, Ziegler et al. 2019, or fixed), ``run.kl_ctl.update(kl, n)``;
  ``ref_refresh_every`` copies π_θ into the reference.
- **advantages and losses**: :func:`rewards_and_advantages` (per-token reward + GAE, PPO's and
  A2C's), ``gae``, ``masked_whiten``, ``loss_mean`` (a mean over the whole batch's tokens, however
  many processes hold it), :func:`policy_outputs` (the update's forward), :func:`add_pretraining_loss`
  (PPO-ptx's γ·LM loss added to a loss), :func:`clipped_surrogate`
  (PPO's clipped objective per token or per response), :func:`minibatches` (shuffled passes over a
  batch), :func:`pretraining_loss` (PPO-ptx), :func:`apply_update` (backward, global-norm clipping, step),
  :func:`minibatch_updates` (passes of minibatch steps, statistics averaged, optional early stop on KL).
- **the loop** (:func:`train_online`): every step through the ``optimizer_step`` hook (guards,
  timers), metrics logged (``metrics_logged``), periodic evaluation every ``[evaluation] every``
  steps, checkpoints every ``checkpoint_every`` steps with exact resume, the policy saved in HF
  format, and the summary.
- **metrics** (:func:`rollout_metrics`): ``reward/proxy``, ``reward/gold`` (measured, never
  optimized; left out without a gold judge), ``<name>/kl``, ``<name>/kl_coef``, ``policy/entropy``,
  ``policy/response_len``, ``policy/distinct_2``, the reward source's ``diagnostics()``.
- **the summary** (:func:`summarize`): ``final`` and ``mean_last_10`` of every metric, timings, and
  ``curve`` — a list of per-step dicts ``{"step", "reward/proxy", "reward/gold", "kl"}`` (at most
  :data:`CURVE_POINTS`, evenly thinned) that ``harness compare`` and the ``overoptimization``
  evaluator read.
"""
from __future__ import annotations

from harness._online.advantages import (gae, global_masked_mean, loss_mean, masked_mean, masked_whiten,
                                           per_token_rewards, process_mean)
from harness._online.checkpoints import resume, save_checkpoint, save_policy
from harness._online.kl import k3, kl_controller
from harness._online.loop import StepFn, train_online
from harness._online.losses import clipped_surrogate, minibatches
from harness._online.online_options import GroupOptions, OnlineOptions, RolloutOptions
from harness._online.rollout import (Rollout, collect_rollout, distinct_n, policy_outputs, process_rows,
                                        reference_logprobs, rollout_metrics, sample_prompts, sample_seed, step_prompts)
from harness._online.run_state import RLRun
from harness._online.setup_run import setup
from harness._online.summary import CURVE_POINTS, SUMMARY_WINDOW, summarize, training_curve
from harness._online.updates import (add_pretraining_loss, apply_update, minibatch_updates, normalized_scores,
                                        pretraining_loss, rewards_and_advantages)

__all__ = [
    "CURVE_POINTS", "SUMMARY_WINDOW", "GroupOptions", "OnlineOptions", "RLRun", "Rollout", "RolloutOptions", "StepFn",
    "add_pretraining_loss", "apply_update", "clipped_surrogate", "collect_rollout", "distinct_n", "gae", "global_masked_mean", "k3",
    "kl_controller", "loss_mean", "masked_mean", "masked_whiten", "minibatch_updates", "minibatches", "normalized_scores",
    "per_token_rewards", "policy_outputs", "pretraining_loss", "process_mean", "process_rows", "reference_logprobs",
    "resume", "rewards_and_advantages", "rollout_metrics", "sample_prompts", "sample_seed", "save_checkpoint",
    "save_policy", "setup", "step_prompts", "summarize", "train_online", "training_curve",
]
