"""The online-optimizer toolkit: what PPO, A2C, GRPO, RLOO and a plugin's online optimizer are written on.

Plugins import it through :mod:`harness.api` (which re-exports ``__all__``); the modules behind it
are internal and may move. An online optimizer is an :class:`OnlineOptimizer`: its ``Options`` and
its ``step``, in its paper's order — rollout → advantages → update → β::

    class Mine(OnlineOptimizer):
        Options = MyOptions          # a subclass of OnlineOptions (critic, GAE) or GroupOptions (groups, no critic)
        name = "mine"                # metrics are "mine/…"

        def step(self, run: RLRun, step: int) -> dict[str, float]:
            batch = collect_rollout(run, step, samples_per_prompt=4)  # sample, score, log-probs, once
            ...                                                      # advantages and loss, your paper's way
            stats = apply_update(run, loss)                          # one clipped gradient step
            metrics = rollout_metrics(run, batch, None, self.name)   # reward/proxy, reward/gold, mine/kl, …
            run.kl_ctl.update(batch.mean_kl, n_steps=run.options.batch_size)  # adaptive β (fixed: no-op)
            return metrics | stats

The package, one module per concept (reading one PPO update is ``rollout.py``, ``objectives.py``,
``update.py``, ``run.py`` and ``loop.py``, plus ``harness_builtins/optimizers/ppo.py``):

- :mod:`~harness._online.options` — the options in three layers (:class:`RolloutOptions` ⊂
  :class:`OnlineOptions` for an actor-critic, :class:`GroupOptions` for a group of samples per
  prompt and no critic); they say which critic setup builds (``critic()``) and whether it loads a
  reference (``needs_reference()``); β's option is declared once (:func:`kl_coef_field`).
- :mod:`~harness._online.run` — :class:`RLRun`, the state of a run, and :func:`setup` from π_SFT:
  policy, frozen reference (none where the options need none: GRPO and RLOO with β = 0), critic,
  AdamW, the β controller, PTX batches, the world's ``rl`` prompts and gold judge; LoRA, offloading,
  DeepSpeed/ZeRO, activation checkpointing and a multi-process launch from the options and ``[compute]``.
- :mod:`~harness._online.rollout` — :func:`collect_rollout`: the step's prompts are a function of
  (seed, step) only, k samples per prompt in consecutive rows (a process holds whole groups), each
  sampled from its own seed; the reward source scores them; π_θ's log-probs, entropy and values and
  π_SFT's log-probs are computed once, without gradients (a :class:`Rollout`, whose ``mean_kl`` is
  the batch's mean KL(π_θ‖π_SFT)). :func:`collect_rollout_and_forward` also hands over π_θ's forward
  with its graph (:class:`PolicyForward`) for an update that is one step on the whole batch.
  :func:`rollout_metrics`: ``reward/proxy``, ``reward/gold``, ``<name>/kl``, ``<name>/kl_coef``,
  ``policy/entropy``, ``policy/response_len``, ``policy/distinct_2``, the reward's ``diagnostics()``.
- :mod:`~harness._online.objectives` — tensor math, no run: the per-token KL-penalized reward, GAE,
  whitening, the k3 estimator and β's controllers (adaptive, Ziegler et al. 2019, or fixed), the
  clipped surrogate, token means over the whole batch (``loss_mean``), PPO-ptx's LM loss.
- :mod:`~harness._online.update` — the same applied to a run: :func:`normalized_scores`,
  :func:`rewards_and_advantages` (PPO's and A2C's steps 2–3), :func:`add_pretraining_loss`,
  :func:`apply_update` (backward, global-norm clipping, step), :func:`minibatches` and
  :func:`minibatch_updates` (passes of shuffled minibatch steps, statistics averaged, optional early
  stop on KL).
- :mod:`~harness._online.loop` — :class:`OnlineOptimizer` and :func:`train_online`: every step
  through the ``optimizer_step`` hook (guards, timers), metrics logged, periodic evaluation, the
  reference refreshed every ``ref_refresh_every`` steps, checkpoints every ``checkpoint_every``
  steps with exact resume, the policy saved in HF format, and :func:`summarize`'s summary (``final``,
  ``mean_last_10``, timings, and the ``curve`` that ``harness compare`` and the
  ``overoptimization`` evaluator read).
- :mod:`~harness._online.memory` — LoRA (the reference is the policy with its adapters off) and
  offloading of the frozen models; :mod:`~harness._online.value` — the critic (separate, shared, none).
"""
from __future__ import annotations

from harness._online.loop import (CURVE_POINTS, SUMMARY_WINDOW, OnlineOptimizer, StepFn, resume, save_checkpoint,
                                  save_policy, summarize, train_online, training_curve)
from harness._online.objectives import (clipped_surrogate, gae, global_masked_mean, k3, kl_controller, loss_mean,
                                        masked_mean, masked_whiten, per_token_rewards, process_mean)
from harness._online.options import GroupOptions, OnlineOptions, RolloutOptions, kl_coef_field
from harness._online.rollout import (PolicyForward, Rollout, collect_rollout, collect_rollout_and_forward,
                                     policy_outputs, process_rows, reference_logprobs, rollout_metrics, sample_prompts,
                                     sample_seed, step_prompts)
from harness._online.run import RLRun, setup
from harness._online.update import (add_pretraining_loss, apply_update, group_updates, minibatch_updates, minibatches,
                                    normalized_scores, pretraining_loss, rewards_and_advantages)

__all__ = [
    # options
    "GroupOptions", "OnlineOptions", "RolloutOptions", "kl_coef_field",
    # the run
    "RLRun", "setup",
    # rollout
    "PolicyForward", "Rollout", "collect_rollout", "collect_rollout_and_forward", "policy_outputs",
    "process_rows", "reference_logprobs", "rollout_metrics", "sample_prompts", "sample_seed", "step_prompts",
    # objectives
    "clipped_surrogate", "gae", "global_masked_mean", "k3", "kl_controller", "loss_mean", "masked_mean",
    "masked_whiten", "per_token_rewards", "process_mean",
    # update
    "add_pretraining_loss", "apply_update", "group_updates", "minibatch_updates", "minibatches", "normalized_scores",
    "pretraining_loss", "rewards_and_advantages",
    # the loop
    "CURVE_POINTS", "SUMMARY_WINDOW", "OnlineOptimizer", "StepFn", "resume", "save_checkpoint", "save_policy",
    "summarize", "train_online", "training_curve",
]
