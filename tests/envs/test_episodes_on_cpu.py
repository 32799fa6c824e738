"""Episodes on the real HF engine (the tiny model, EOS made likely through the engine's own
generation config so that turns end): the trained sequence is exactly the sampled ids plus
the rendered observation ids, the loss mask covers exactly the model's tokens, max_turns and
the token budget hold, and an episode waiting on a slow step does not hold the others."""

import time

import pytest

from rlhf.batch import collate
from rlhf.config.base import TinyModelConfig
from rlhf.engines.hf import HFEngine
from rlhf.engines.interface import SamplingSettings
from rlhf.envs import End, Environment, EpisodeRunner, EpisodeSettings, Observation, ObservationRenderer, SingleTurn
from rlhf.models import load_tokenizer, tiny_model_path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tiny_model_path(TinyModelConfig(), str(tmp_path_factory.mktemp("cache")), 0)
    engine = HFEngine(path, "float32", "cpu")
    engine.model.generation_config.sequence_bias = {(engine.eos_id,): 3.0}  # turns of ~8 tokens
    return engine, load_tokenizer(path)


def _prompts(tok, k):
    texts = [tok.apply_chat_template([{"role": "user", "content": f"What is {i} + {i}?"}], tokenize=False,
                                     add_generation_prompt=True) for i in range(k)]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts], [{"prompt": f"What is {i} + {i}?"}
                                                                             for i in range(k)]


class Echo(Environment):
    """Answers every turn with a tool message naming the turn; never ends on its own."""

    def start(self, row):
        self.seen = []
        return super().start(row)

    def step(self, turn):
        self.seen.append(turn)
        return Observation([{"role": "tool", "content": f"obs {turn.index}"}])


class EndsAfterTwo(Echo):
    def step(self, turn):
        return End(reward=0.5, info={"turn": turn.index}) if turn.index == 1 else super().step(turn)


def _segments(c):
    """Runs of (loss_mask value, ids) along the response."""
    out = []
    for tok, m in zip(c.token_ids, c.loss_mask):
        if out and out[-1][0] == m:
            out[-1][1].append(tok)
        else:
            out.append((m, [tok]))
    return out


def test_trained_ids_are_sampled_ids_plus_observation_ids(model):
    engine, tok = model
    prompt_ids, rows = _prompts(tok, 3)
    runner = EpisodeRunner(engine, tok, Echo, EpisodeSettings(max_turns=3, max_episode_tokens=200), engine.eos_id)
    s = SamplingSettings(n=2, temperature=1.0, max_new_tokens=24, seed=3)
    comps = runner.run(prompt_ids, rows, s)
    assert len(comps) == 6
    obs_ids = ObservationRenderer(tok, engine.eos_id).ids
    # the first turn is the single-turn generation itself, with the same seed
    first = engine.generate(prompt_ids, s)
    multi = 0
    for c, f in zip(comps, first):
        segs = _segments(c)
        assert segs[0] == (1, f.token_ids)
        assert c.logprobs[:len(f.token_ids)] == f.logprobs
        for k, (m, ids) in enumerate(segs):
            if m == 0:  # observation k // 2, rendered for that turn alone, then appended as ids
                assert ids == obs_ids([{"role": "tool", "content": f"obs {k // 2}"}])
                assert tok.decode(ids) == f"\n<|im_start|>tool\nobs {k // 2}<|im_end|>\n<|im_start|>assistant\n"
            else:
                assert ids[-1] == engine.eos_id or k == len(segs) - 1  # every turn but a cut last one ends
        multi += c.episode["turns"] > 1
        # the whole row reads as the chat template renders the conversation
        conv = [{"role": "user", "content": rows[comps.index(c) // 2]["prompt"]}]
        for k, (m, ids) in enumerate(segs):
            conv.append({"role": "assistant", "content": tok.decode(ids[:-1] if ids[-1] == engine.eos_id else ids)}
                        if m else {"role": "tool", "content": f"obs {k // 2}"})
        rendered = tok.apply_chat_template(conv, tokenize=False)
        text = tok.decode(prompt_ids[comps.index(c) // 2] + c.token_ids)
        assert rendered.startswith(text) and rendered[len(text):] in ("\n", "<|im_end|>\n")
    assert multi >= 3  # most episodes took several turns


def test_loss_mask_covers_exactly_the_model_tokens(model):
    engine, tok = model
    prompt_ids, rows = _prompts(tok, 2)
    runner = EpisodeRunner(engine, tok, Echo, EpisodeSettings(max_turns=3, max_episode_tokens=200), engine.eos_id)
    comps = runner.run(prompt_ids, rows, SamplingSettings(n=2, max_new_tokens=24, seed=4))
    batch = collate([p for p in prompt_ids for _ in range(2)], comps, tok.pad_token_id)
    R = batch["response_mask_BR"].shape[1]
    for i, c in enumerate(comps):
        n = len(c.token_ids)
        assert batch["input_ids_BT"][i, -R:][:n].tolist() == c.token_ids
        assert batch["response_mask_BR"][i, :n].tolist() == [float(m) for m in c.loss_mask]
        assert batch["response_mask_BR"][i, n:].sum() == 0 and batch["attention_mask_BT"][i, -R:].sum() == n
        lp = batch["rollout_logprobs_BR"][i, :n]
        mask = batch["response_mask_BR"][i, :n].bool()
        assert (lp[~mask] == 0).all() and (lp[mask] < 0).all()  # log-probs exist for sampled tokens only
    assert (batch["response_mask_BR"].sum(1) < batch["attention_mask_BT"][:, -R:].sum(1)).any()


def test_without_logprobs_the_same_samples_carry_none(model):
    engine, tok = model
    prompt_ids, rows = _prompts(tok, 2)
    runner = EpisodeRunner(engine, tok, Echo, EpisodeSettings(max_turns=3, max_episode_tokens=120), engine.eos_id)
    s = SamplingSettings(n=2, max_new_tokens=24, seed=4)
    with_lp = runner.run(prompt_ids, rows, s)
    without = runner.run(prompt_ids, rows, SamplingSettings(n=2, max_new_tokens=24, seed=4, logprobs=False))
    assert [c.token_ids for c in without] == [c.token_ids for c in with_lp]  # asking does not change sampling
    assert max(c.episode["turns"] for c in without) > 1
    assert all(c.logprobs is None for c in without) and all(len(c.logprobs) == len(c.token_ids) for c in with_lp)
    prompts = [p for p in prompt_ids for _ in range(2)]
    assert "rollout_logprobs_BR" not in collate(prompts, without, tok.pad_token_id)
    assert "rollout_logprobs_BR" not in collate(prompts, with_lp[:1] + without[1:], tok.pad_token_id)
    assert collate(prompts, with_lp, tok.pad_token_id)["rollout_logprobs_BR"].min() < 0


def test_max_turns_and_the_token_budget_hold(model):
    engine, tok = model
    prompt_ids, rows = _prompts(tok, 4)
    for max_turns, budget in ((2, 400), (5, 60)):
        runner = EpisodeRunner(engine, tok, Echo, EpisodeSettings(max_turns=max_turns, max_episode_tokens=budget),
                               engine.eos_id)
        comps = runner.run(prompt_ids, rows, SamplingSettings(n=2, max_new_tokens=24, seed=5))
        for c in comps:
            assert c.episode["turns"] <= max_turns and len(c.token_ids) <= budget
            assert not c.finished  # Echo never ends an episode: every one was cut
        assert max(c.episode["turns"] for c in comps) == max_turns or budget == 60
    assert max(len(c.token_ids) for c in comps) > 40  # the budget, not the turns, bounded these


def test_an_environment_ends_episodes_with_its_reward(model):
    engine, tok = model
    prompt_ids, rows = _prompts(tok, 2)
    runner = EpisodeRunner(engine, tok, EndsAfterTwo, EpisodeSettings(max_turns=4, max_episode_tokens=300),
                           engine.eos_id)
    comps = runner.run(prompt_ids, rows, SamplingSettings(n=4, max_new_tokens=32, seed=6))
    ended = [c for c in comps if c.finished]
    assert ended and all(c.episode["turns"] == 2 and c.episode["reward"] == 0.5 and c.episode["info"] == {"turn": 1.0}
                         for c in ended)


def test_single_turn_is_the_engine_call_itself(model):
    engine, tok = model
    prompt_ids, rows = _prompts(tok, 3)
    s = SamplingSettings(n=2, max_new_tokens=16, seed=7)
    got = EpisodeRunner(engine, tok, SingleTurn, EpisodeSettings(), engine.eos_id).run(prompt_ids, rows, s)
    want = engine.generate(prompt_ids, s)
    assert [(c.token_ids, c.logprobs, c.finished, c.loss_mask) for c in got] == \
        [(c.token_ids, c.logprobs, c.finished, None) for c in want]


class SlowFirst(Environment):
    """Episode 0's first step takes `slow_s` (a slow tool); every other step answers at once. Two
    observations, then the episode ends."""

    slow_s = 6.0

    def start(self, row):
        self.slow = row["slow"]
        return super().start(row)

    def step(self, turn):
        if self.slow and turn.index == 0:
            time.sleep(self.slow_s)
            self.resumed_at = time.monotonic()
        if turn.index == 2:
            self.ended_at = time.monotonic()
            return End()
        return Observation([{"role": "tool", "content": "ok"}])


def test_a_slow_step_does_not_hold_the_other_episodes(model):
    engine, tok = model
    prompt_ids, rows = _prompts(tok, 4)
    rows = [r | {"slow": i == 0} for i, r in enumerate(rows)]
    s = SamplingSettings(n=1, max_new_tokens=24, seed=8)
    t0 = time.monotonic()
    engine.generate(prompt_ids, s)
    # slower than the other episodes' remaining two turns can take on this machine right now
    SlowFirst.slow_s = max(3.0, 4 * (time.monotonic() - t0))
    runner = EpisodeRunner(engine, tok, SlowFirst, EpisodeSettings(max_turns=3, max_episode_tokens=400),
                           engine.eos_id)
    envs = []
    start = runner._start
    runner._start = lambda *a: envs.append(start(*a)) or envs[-1]  # to read each episode's end time
    t0 = time.monotonic()
    comps = runner.run(prompt_ids, rows, s)
    ended = {i: ep.env.ended_at - t0 for i, ep in enumerate(envs) if hasattr(ep.env, "ended_at")}
    resumed = envs[0].env.resumed_at - t0
    fast = [t for i, t in ended.items() if i != 0]
    assert fast and max(fast) < resumed, (ended, resumed)  # they finished while episode 0 still waited
    assert len(comps) == 4
