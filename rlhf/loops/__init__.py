"""The loops the recipes run, each in a module of its own:

    rl_run.py            an RL run end to end (inputs, warm start, actors, steps, eval, checkpoints)
    rl.py                the RL step as phases: collect -> prepare -> update -> sync (GRPO, DAPO)
    ppo.py               PPO's prepare/update on the same step (critic, GAE, KL in the reward)
    collect.py           the collect phase: scored, shaped groups and dynamic sampling
    rollout.py           generation requests and rewards over the actors, off-policy prefetch
    recovery.py          restarting dead generator and reward actors
    evaluation.py        held-out accuracy by generation, for RL and supervised runs
    warmstart.py         the cached supervised warm start before RL, RM and DPO
    supervised.py        the one supervised loop; supervised_tasks.py: SFT, RM and DPO in it
"""
