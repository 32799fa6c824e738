"""Placement plans (pure) and their reservation with Ray placement groups (CPU bundles here:
the same layout a GPU cluster gets, minus the GPU resource)."""

import pytest
import ray

from rlhf.actors.group import ActorGroup
from rlhf.config import ConfigError, RLConfig, load_config
from rlhf.placement import Slot, plan_from_config, plan_placement, reserve


def test_colocate_shares_each_gpu_between_trainer_rank_and_generator():
    plan = plan_placement("colocate", trainers=4, generators=4, reference=True, reward_model=True, critic=True)
    assert plan.bundles == [{"CPU": 4.0, "GPU": 1}, {"CPU": 4.0, "GPU": 1}, {"CPU": 3.0, "GPU": 1},
                            {"CPU": 3.0, "GPU": 1}]
    assert [s.bundle for s in plan.slots["trainer"]] == [0, 1, 2, 3]
    assert [s.bundle for s in plan.slots["generator"]] == [0, 1, 2, 3]
    assert [s.bundle for s in plan.slots["critic"]] == [0, 1, 2, 3]
    assert plan.slots["reference"] == [Slot(0, 0.25)]  # GPU 0: trainer, generator, critic, reference
    assert plan.slots["reward_model"] == [Slot(1, 0.25)]  # GPU 1: trainer, generator, critic, reward model
    assert plan.slots["trainer"][2] == Slot(2, 0.3333)  # Ray counts GPU shares in 1e-4 units


def test_split_gives_generators_their_own_gpus_and_tensor_parallel_bundles():
    plan = plan_placement("split", trainers=2, generators=2, tensor_parallel=2, reference=True)
    assert plan.bundles == [{"CPU": 2.0, "GPU": 1}, {"CPU": 1.0, "GPU": 1}, {"CPU": 1.0, "GPU": 2},
                            {"CPU": 1.0, "GPU": 2}]
    assert plan.slots["generator"] == [Slot(2, 2.0), Slot(3, 2.0)]
    assert plan.slots["trainer"] == [Slot(0, 0.5), Slot(1, 1.0)]
    assert plan.slots["reference"] == [Slot(0, 0.5)]
    own = plan_placement("split", trainers=2, generators=1, reference=True, reward_model=True, aux_on_trainer=False)
    assert own.slots["reference"] == [Slot(3, 1.0)] and own.slots["reward_model"] == [Slot(4, 1.0)]
    assert len(own.bundles) == 5 and sum(b["GPU"] for b in own.bundles) == 5


def test_bad_layouts_are_refused_with_the_keys_to_change():
    with pytest.raises(ValueError, match="generator.num_workers"):
        plan_placement("colocate", trainers=2, generators=1)
    with pytest.raises(ValueError, match="use colocate, split or none"):
        plan_placement("pack", trainers=1, generators=1)
    with pytest.raises(ConfigError, match="placement.mode=colocate"):
        load_config(RLConfig, RLConfig(), ["placement.mode=colocate", "generator.tensor_parallel_size=2"])


def _actors_per_bundle(pg, n: int) -> list[int]:
    """Actors placed in each bundle, read from Ray's per-bundle accounting (each takes 0.001)."""
    free = ray.available_resources()
    return [round((1000 - free.get(f"bundle_group_{i}_{pg.id.hex()}", 1000)) / 0.001) for i in range(n)]


def test_roles_land_in_their_planned_bundles(ray_local):
    class Probe:  # defined here so that Ray ships it by value
        pass

    cfg = load_config(RLConfig, RLConfig(), ["placement.mode=split", "trainer.num_workers=2", "algorithm.kl_coef=0.1",
                                             "generator.num_workers=2", "trainer.cpus_per_worker=0.5",
                                             "generator.cpus_per_worker=0.5"])
    plan = plan_from_config(cfg, gpus=False)
    pg = reserve(plan, cfg.placement.strategy)
    placed, groups = [0] * len(plan.bundles), []
    for role, slots in plan.slots.items():
        groups.append(group := ActorGroup(Probe, len(slots), name=role, num_cpus=0.5, placement=[(pg, s) for s in slots]))
        ray.get([a.__ray_ready__.remote() for a in group.actors])
        for s in slots:
            placed[s.bundle] += 1
        assert _actors_per_bundle(pg, len(plan.bundles)) == placed, role
        assert ray.get(group.actors[0].__ray_call__.remote(
            lambda _: ray.get_runtime_context().get_placement_group_id())) == pg.id.hex()
    assert placed == [2, 1, 1, 1]  # trainer 0 + reference, trainer 1, generator 0, generator 1
