"""Benchmark: offline policy replay speed (policy steps per second), vectorised across runs.

Replays UCB1 and I-SplitEE (online and full side observations) over 7 settings x 20 runs of a
10,000-frame stream with 9 arms — the shape of the default ``splitee evaluate`` — on synthetic
confidences, and compares with a plain per-step Python loop over one stream measured in the
same run. Prints one JSON line.
"""

from __future__ import annotations

import json
import platform
import time

import numpy as np

from policy_store.offline import random_orders, replay
from policy_store.policies import UCB1, ISplitEE
from policy_store.rewards import CostModel
from splitee.machine import machine_description


def synthetic_conf(rng: np.random.Generator, n: int, arms: int) -> np.ndarray:
    base = np.linspace(0.45, 0.95, arms)
    return np.clip(base + 0.25 * rng.standard_normal((n, arms)), 0.1, 1.0)


def plain_loop(policy, rewards: np.ndarray, exits: np.ndarray, order: np.ndarray) -> float:
    """The same policy, one stream, one Python step at a time (the un-vectorised reference)."""
    from policy_store.policies import ArmStats

    L = rewards.shape[1]
    st = ArmStats.zeros(L)
    known = np.ones(L, bool)
    t0 = time.perf_counter()
    for x in order:
        a = int(policy.pull(st))
        final_known = (not exits[x, a]) or a == L - 1
        mask = policy.observe(np.array(a), known, exits[x], np.array(final_known))
        policy.update(st, mask, rewards[x], pulled=a)
    return len(order) / (time.perf_counter() - t0)


def main() -> None:
    rng = np.random.default_rng(0)
    S, R, N, L = 7, 20, 10_000, 9
    cm = CostModel(list(range(3, 28, 3)))
    confs = [synthetic_conf(rng, N, L) for _ in range(S)]
    rewards = np.stack([cm.reward_matrix(c) for c in confs])
    exits = np.stack([cm.exits_at(c) for c in confs])
    orders = random_orders(N, R, 0)
    out = {}
    total_steps, total_s = 0, 0.0
    for name, cls, side in (
        ("ucb1", UCB1, "online"),
        ("isplitee-online", ISplitEE, "online"),
        ("isplitee-full", ISplitEE, "full"),
    ):
        t0 = time.perf_counter()
        res = replay(cls(), rewards, exits, orders, side)
        dt = time.perf_counter() - t0
        out[f"{name}_steps_per_s"] = round(res.steps / dt)
        total_steps += res.steps
        total_s += dt
    loop = plain_loop(ISplitEE(), rewards[0], exits[0], orders[0][:3000])
    vec = total_steps / total_s
    print(
        json.dumps(
            {
                "bench": "replay_speed",
                "streams": S * R,
                "frames": N,
                "arms": L,
                "steps_per_s": round(vec),
                **out,
                "plain_loop_steps_per_s": round(loop),
                "speedup_vs_plain_loop": round(vec / loop, 1),
                "machine": machine_description()["cpu"],
                "host": platform.node(),
            }
        )
    )


if __name__ == "__main__":
    main()
