"""The configs under examples/ load through their recipe's own config loader, and their roles
land on the GPUs their header states (`# gpus: N`; the layout of each file is written out in
LAYOUTS below): a config that stops loading, or places its roles differently, fails here."""

import importlib
import re
from pathlib import Path

import pytest

from rlhf.config import RECIPE_TREES, load_config
from rlhf.placement import plan_from_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

QUAD, REST = [0, 1, 2, 3], [4, 5, 6, 7]
# file -> the GPU (placement bundle) of every actor of each role, in rank order; "ranks" for the
# supervised recipes, whose trainer ranks each ask Ray for trainer.gpus_per_worker; {} for CPU only
LAYOUTS = {
    "smollm2-135m-dapo-cpu.yaml": {},
    # colocated: trainer, generator and GRPO's reference share GPU 0
    "qwen2.5-1.5b-grpo-gsm8k-1gpu.yaml": {"trainer": [0], "generator": [0], "reference": [0]},
    # split: 4 trainer GPUs, 4 generator GPUs; no reference (DAPO has no KL term)
    "qwen2.5-7b-dapo-gsm8k-8gpu.yaml": {"trainer": QUAD, "generator": REST},
    "sft-rm-ppo/sft.yaml": {"ranks": 8},
    "sft-rm-ppo/rm.yaml": {"ranks": 8},
    # split: critic ranks beside the policy ranks, the reference on GPU 0, the reward model on GPU 1
    "sft-rm-ppo/ppo.yaml": {"trainer": QUAD, "critic": QUAD, "reference": [0], "reward_model": [1],
                            "generator": REST},
}
RUN_LINE = re.compile(r"^# run: python -m rlhf\.recipes\.(\w+) --config (\S+)$", re.MULTILINE)
GPUS_LINE = re.compile(r"^# gpus: (\d+)$", re.MULTILINE)


def _header(name: str) -> tuple[str, int]:
    """(recipe, GPUs) from the file's comment lines; its command must name the file itself."""
    text = (EXAMPLES / name).read_text()
    run, gpus = RUN_LINE.search(text), GPUS_LINE.search(text)
    assert run and gpus, f"{name}: the header needs '# run: python -m rlhf.recipes.X --config ...' and '# gpus: N'"
    assert run.group(2) == f"examples/{name}", f"{name}: its command loads {run.group(2)}"
    assert re.search(r"^# measured: ", text, re.MULTILINE), f"{name}: the header needs '# measured: ...'"
    return run.group(1), int(gpus.group(1))


def _load(name: str):
    recipe, _ = _header(name)
    defaults = getattr(importlib.import_module(f"rlhf.recipes.{recipe}"), f"{recipe}_defaults")()
    return load_config(RECIPE_TREES[recipe], defaults, ["--config", str(EXAMPLES / name)])


def test_every_example_has_a_layout_here_and_a_line_in_the_readme():
    files = sorted(str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*.yaml"))
    assert files == sorted(LAYOUTS)
    readme = (EXAMPLES / "README.md").read_text()
    assert [f for f in files if f not in readme] == []


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_example_places_its_roles_as_stated(name):
    cfg, (_, gpus), layout = _load(name), _header(name), LAYOUTS[name]
    if "ranks" in layout:  # supervised: data-parallel trainer ranks, a GPU each
        assert (cfg.trainer.num_workers, cfg.trainer.gpus_per_worker) == (layout["ranks"], 1.0)
        assert cfg.trainer.num_workers * cfg.trainer.gpus_per_worker == gpus
        return
    if not layout:  # CPU: no placement group, no actor asks for a GPU
        assert gpus == 0 and cfg.placement.mode == "none" and cfg.generator.backend == "hf"
        assert cfg.trainer.gpus_per_worker == 0 and cfg.generator.gpus_per_worker == 0
        return
    plan = plan_from_config(cfg, gpus=True)
    assert sum(b["GPU"] for b in plan.bundles) == gpus
    assert {role: [s.bundle for s in slots] for role, slots in plan.slots.items()} == layout
    for role, slots in plan.slots.items():  # the actors sharing a GPU ask for all of it between them
        for s in slots:
            sharers = sum(x.bundle == s.bundle for xs in plan.slots.values() for x in xs)
            assert s.gpus * sharers == pytest.approx(plan.bundles[s.bundle]["GPU"], abs=1e-3), (role, s)


def test_pipeline_stages_read_the_outputs_of_the_stages_before():
    from rlhf.loops.supervised_tasks import RewardModelTask, SFTTask

    sft, rm, ppo = (_load(f"sft-rm-ppo/{stage}.yaml") for stage in ("sft", "rm", "ppo"))
    policy = str(Path(sft.run.output_dir) / sft.run.name / SFTTask.output)
    reward_model = str(Path(rm.run.output_dir) / rm.run.name / RewardModelTask.output)
    assert rm.model.path == policy and ppo.model.path == policy
    assert ppo.reward.model == reward_model and ppo.critic.init == reward_model
    assert rm.warmstart.steps == 0 and ppo.warmstart.steps == 0  # start from the SFT policy as it is
    assert len({sft.run.name, rm.run.name, ppo.run.name}) == 3
