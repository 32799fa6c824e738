"""Where each role's actors run: a plan of Ray placement-group bundles (one per GPU, or per
tensor-parallel engine), computed from the config by a pure function, then reserved at once.

- `colocate`: bundle i is GPU i; trainer rank i and generator i share it (the generator
  sleeps while the trainer trains); reference, reward model and critic join the trainers' GPUs.
- `split`: trainer ranks on GPUs of their own, each generator on `tensor_parallel_size` GPUs
  of its own; reference, reward model and critic share the trainers' GPUs, or get their own
  with `placement.aux_on_trainer=false`.
- `none`: no placement group; each actor asks Ray for `*.gpus_per_worker` (CPU runs, tests).

Bundles carry Ray resources only, so a plan spans any number of nodes (`PACK` fills nodes in
turn; `SPREAD` spreads the bundles).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Slot:
    bundle: int
    gpus: float  # the actor's share of the bundle's GPUs (what it asks Ray for)


@dataclass
class PlacementPlan:
    bundles: list[dict] = field(default_factory=list)  # Ray resources of each bundle
    slots: dict[str, list[Slot]] = field(default_factory=dict)  # role -> one slot per actor, in rank order


def plan_placement(mode: str, *, trainers: int, generators: int, tensor_parallel: int = 1, reference: bool = False,
                   reward_model: bool = False, critic: bool = False, aux_on_trainer: bool = True,
                   trainer_cpus: float = 1.0, generator_cpus: float = 1.0, gpus: bool = True) -> PlacementPlan:
    """The bundles and every actor's slot. `gpus=False` plans the same layout with CPU-only
    bundles (a cluster without GPUs)."""
    if mode not in ("colocate", "split"):
        raise ValueError(f"placement.mode={mode!r}: use colocate, split or none")
    if mode == "colocate" and (generators != trainers or tensor_parallel != 1):
        raise ValueError(f"placement.mode=colocate puts one engine on each trainer GPU: it needs generator.num_workers "
                         f"({generators}) == trainer.num_workers ({trainers}) and generator.tensor_parallel_size=1 "
                         f"(got {tensor_parallel}); use placement.mode=split otherwise")
    members: list[list[tuple[str, float]]] = []  # per bundle: (role, cpus) of its actors, in placement order
    roles: dict[str, list[int]] = {}

    def new_bundle() -> int:
        members.append([])
        return len(members) - 1

    def put(role: str, bundle: int, cpus: float) -> None:
        members[bundle].append((role, cpus))
        roles.setdefault(role, []).append(bundle)

    trainer_bundles = [new_bundle() for _ in range(trainers)]
    for b in trainer_bundles:
        put("trainer", b, trainer_cpus)
    for j in range(generators):
        put("generator", trainer_bundles[j] if mode == "colocate" else new_bundle(), generator_cpus)
    shared = mode == "colocate" or aux_on_trainer
    aux = [("critic", trainers)] if critic else []
    aux += [("reference", 1)] if reference else []
    aux += [("reward_model", 1)] if reward_model else []
    for role, count in aux:
        for i in range(count):
            # reference on the first trainer GPU, reward model on the second (if any): balanced memory
            b = i if role == "critic" else min(int(role == "reward_model"), trainers - 1)
            put(role, trainer_bundles[b] if shared else new_bundle(), trainer_cpus)

    plan = PlacementPlan()
    gpus_of = [tensor_parallel if mode == "split" and m[0][0] == "generator" else 1 for m in members]
    for m, g in zip(members, gpus_of):
        bundle = {"CPU": sum(c for _, c in m)}
        if gpus:
            bundle["GPU"] = g
        plan.bundles.append(bundle)
    for role, bundles in roles.items():
        # actors sharing a GPU split it evenly (Ray's bookkeeping; memory is set by each engine)
        plan.slots[role] = [Slot(b, _share(gpus_of[b], len(members[b])) if gpus else 0.0) for b in bundles]
    return plan


def _share(bundle_gpus: int, actors: int) -> float:
    if actors == 1:
        return float(bundle_gpus)
    return int(bundle_gpus / actors * 1e4) / 1e4  # Ray counts GPU fractions in 1e-4 units


def plan_from_config(cfg, gpus: bool) -> PlacementPlan:
    t, g, roles = cfg.trainer, cfg.generator, cfg.roles()
    return plan_placement(cfg.placement.mode, trainers=t.num_workers, generators=g.num_workers,
                          tensor_parallel=g.tensor_parallel_size, reference=roles.reference,
                          reward_model=roles.reward_model, critic=roles.critic,
                          aux_on_trainer=cfg.placement.aux_on_trainer, trainer_cpus=t.cpus_per_worker,
                          generator_cpus=g.cpus_per_worker, gpus=gpus)


def reserve(plan: PlacementPlan, strategy: str, timeout_s: float = 600.0):
    """The placement group of `plan`, once Ray has reserved every bundle (fails with the
    bundles it asked for when the cluster cannot hold them)."""
    import ray
    from ray.util.placement_group import placement_group

    pg = placement_group(plan.bundles, strategy=strategy)
    if not pg.wait(timeout_s):
        raise RuntimeError(f"Ray could not reserve the placement bundles {plan.bundles} with strategy {strategy} "
                           f"within {timeout_s:.0f} s; the cluster has {ray.cluster_resources()}")
    return pg
