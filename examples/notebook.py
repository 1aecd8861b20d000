# %% [markdown]
# # harness from Python
#
# A notebook in script form (`# %%` cells: VS Code, Jupytext and PyCharm open it as a notebook;
# `python examples/notebook.py` runs it whole). It runs a tiny experiment on the embedded world,
# runs it again with a larger KL coefficient β (only the policy and its evaluation are retrained:
# SFT, feedback and the reward model are reused from the store), loads both runs into one
# DataFrame, writes the comparison report and plots the proxy reward over PPO steps.
# Runs go to ./runs, the report to ./report, the plot to ./proxy_reward.png; a few tens of seconds on a CPU.

# %%
import matplotlib.pyplot as plt

import harness

# %% [markdown]
# An experiment is a TOML file or a dict of the same tables. This one is the pipeline at test size.

# %%
tiny = {
    "experiment": {"name": "notebook-tiny", "seed": 0},
    "model": {"base": "embedded:micro"},
    "world": {"embedded": {"sft_size": 120, "rm_size": 80, "rl_size": 64, "eval_size": 24,
                           "corpus_paragraphs": 200, "corpus_dialogues": 100, "heldout_docs": 20}},
    "sft": {"next_token": {"epochs": 1, "batch_size": 16, "eval_samples": 16}},
    "feedback": {"ranking": {"k": 4}},
    "reward_model": {"bradley_terry": {"epochs": 1, "normalization_samples": 16}},
    "optimizer": {"ppo": {"steps": 3, "batch_size": 8, "minibatch_size": 4, "max_new_tokens": 12,
                          "value_model": "shared", "ppo_epochs": 1}},
    "evaluation": {"evaluators": ["rewards", "win_rate"], "prompts": 16, "max_new_tokens": 12},
    "compute": {"threads": 1},
}
base = harness.run(tiny, output="runs")
base  # a one-line summary and the headline cells

# %% [markdown]
# The same experiment with β = 0.2, under another name (a run directory is `<output>/<name>`).

# %%
high_kl = harness.run(tiny, {"experiment.name": "notebook-tiny-kl", "optimizer.ppo.init_kl_coef": 0.2}, "runs")
assert all(high_kl.stages[s]["reused"] for s in ("sft", "feedback", "reward_model"))

# %%
runs = harness.load_runs([base.path, high_kl.path])  # a row per run
runs[["run", "optimizer", "win rate vs SFT", "win rate vs SFT_low", "win rate vs SFT_high", "KL (nats)", "compute_s"]]

# %%
table = harness.compare([base, high_kl], out="report")  # report.md, .html, .csv and plots in ./report
print(table.attrs["report"])
table

# %%
fig, ax = plt.subplots(figsize=(5, 3))
for run in (base, high_kl):
    policy = run.metrics("policy")
    ax.plot(policy["step"], policy["reward/proxy"], marker="o", label=run.name)
ax.set(xlabel="PPO step", ylabel="reward/proxy", title="Proxy reward during training")
ax.legend()
fig.savefig("proxy_reward.png", dpi=100, bbox_inches="tight")
