"""math_verify rewards per second on 10,000 completions with 1 and 2 worker processes.

    python benchmarks/reward_throughput.py          # prints one JSON line

The completions mix right and wrong, boxed and plain answers; pool start-up is excluded
(one warm-up batch), so the figure is steady-state throughput.
"""

from __future__ import annotations

import json
import random
import time

from rlhf.reward import RewardRunner

N = 10_000


def make_batch(n: int, seed: int = 0):
    rng = random.Random(seed)
    prompts, completions, answers = [], [], []
    for _ in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        guess = a + b if rng.random() < 0.6 else a + b + rng.choice([-10, -1, 1, 10])
        form = rng.choice(["\\boxed{%d}" % guess, "The answer is %d." % guess, "%d + %d = %d" % (a, b, guess)])
        prompts.append(f"What is {a} + {b}?")
        completions.append(form)
        answers.append(f"{a} + {b} = {a + b}\n#### {a + b}")
    return prompts, completions, {"answer": answers}


def main() -> None:
    prompts, completions, columns = make_batch(N)
    result = {"completions": N}
    for workers in (1, 2):
        with RewardRunner(["math_verify"], num_workers=workers, chunk_size=256) as runner:
            runner.score(prompts[:512], completions[:512], {"answer": columns["answer"][:512]})  # warm-up
            t0 = time.perf_counter()
            scores, metrics = runner.score(prompts, completions, columns)
            seconds = time.perf_counter() - t0
        result[f"workers_{workers}_per_s"] = round(N / seconds, 1)
        result[f"workers_{workers}_accuracy"] = round(sum(scores) / N, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
