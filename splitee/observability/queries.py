"""The PromQL behind every dashboard panel, ``splitee top`` and ``splitee report``.

Kept in one place so the live view, the report and Grafana answer a question with the same
expression. ``w`` is the rate window: Grafana's ``$__rate_interval`` in dashboards, an explicit
duration (:func:`splitee.observability.promapi.rate_window`) elsewhere. ``role`` and ``worker``
are file_sd target labels (every process registers itself with them).
"""

from __future__ import annotations

GRAFANA_WINDOW = "$__rate_interval"


def frames_in(w: str) -> str:
    return f"sum by (role) (rate(splitee_frames_in_total[{w}]))"


def frames_out(w: str) -> str:
    return f"sum by (role, where) (rate(splitee_frames_out_total[{w}]))"


def frames_sent(w: str) -> str:
    return f"sum by (camera) (rate(splitee_frames_sent_total[{w}]))"


def results_rate(w: str) -> str:
    return f"sum(rate(splitee_frames_out_total[{w}]))"


def e2e_quantile(q: float, w: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate(splitee_end_to_end_seconds_bucket[{w}])))"


def e2e_quantile_where(q: float, w: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (le, where) "
        f"(rate(splitee_end_to_end_seconds_bucket[{w}])))"
    )


def latency_stage_quantile(q: float, w: str) -> str:
    """Per-frame latency of each stage: queue, edge, offload_hop, cloud, result_hop."""
    return (
        f"histogram_quantile({q}, sum by (le, stage) "
        f"(rate(splitee_latency_stage_seconds_bucket[{w}])))"
    )


def stage_quantile(q: float, w: str) -> str:
    return f"histogram_quantile({q}, sum by (le, stage) (rate(splitee_stage_seconds_bucket[{w}])))"


def batch_mean(w: str) -> str:
    return (
        f"sum by (role) (rate(splitee_batch_size_sum[{w}])) "
        f"/ sum by (role) (rate(splitee_batch_size_count[{w}]))"
    )


def offload_bytes(w: str) -> str:
    return f"sum by (codec) (rate(splitee_offload_bytes_total[{w}]))"


def uplink_bytes(w: str) -> str:
    """What the edge puts on its uplink per second, by arm and codec (payload and headers)."""
    return f"sum by (arm, codec) (rate(splitee_uplink_bytes_total[{w}]))"


def uplink_share(w: str) -> str:
    """The fraction of the configured uplink rate that the offloads use (1 = full)."""
    return (
        f"8 * sum(rate(splitee_uplink_bytes_total[{w}])) "
        '/ scalar(max(splitee_uplink_rate_bits_per_second{source="configured"}))'
    )


def offload_hop_quantile(q: float, w: str) -> str:
    """Per frame: offload sent at the edge → consumed by the cloud (the uplink's share)."""
    return (
        f"histogram_quantile({q}, sum by (le) "
        f'(rate(splitee_latency_stage_seconds_bucket{{stage="offload_hop"}}[{w}])))'
    )


UPLINK_RATE = "max by (source) (splitee_uplink_rate_bits_per_second)"
LAG_BY_GROUP = "sum by (group, topic) (splitee_kafka_consumer_lag_messages)"
LAG_TOTAL = "sum by (group) (splitee_kafka_consumer_lag_messages)"
DEAD_LETTERS_TOTAL = "sum by (role, reason) (splitee_dead_letters_total)"


def dead_letters(w: str) -> str:
    return f"sum by (role, reason) (rate(splitee_dead_letters_total[{w}]))"


TARGETS_UP = 'sum by (role) (up{job="splitee"})'


# ---------------------------------------------------------------- policy
def arm_choice(w: str, camera: str = ".*") -> str:
    return f'sum by (arm) (rate(splitee_arm_chosen_total{{camera=~"{camera}"}}[{w}]))'


def current_arm(camera: str = ".*") -> str:
    return f'max by (camera) (splitee_current_arm{{camera=~"{camera}"}})'


POLICY_PULLS = "sum by (arm) (splitee_policy_pulls_total)"
POLICY_MEAN_REWARD = "max by (policy, arm) (splitee_policy_mean_reward)"
POLICY_UCB = "max by (policy, arm) (splitee_policy_ucb_index)"
POLICY_BEST_ARM = "max by (policy) (splitee_policy_best_arm)"


def policy_frames(w: str) -> str:
    return f"sum by (policy) (rate(splitee_policy_frames_total[{w}]))"


def reward_quantile(q: float, w: str) -> str:
    """From the buckets: prometheus-client exposes no ``_sum`` for histograms whose buckets
    go below zero (rewards can be negative), so no mean here; Redis has the exact means."""
    return f"histogram_quantile({q}, sum by (le, arm) (rate(splitee_reward_bucket[{w}])))"


REGRET = "max(splitee_eval_regret)"
REGRET_PER_FRAME = "max(splitee_eval_regret_per_frame)"
BEST_FIXED_ARM = "max(splitee_eval_best_fixed_arm)"


# ---------------------------------------------------------------- quality
WINDOW_ACCURACY = "max(splitee_eval_window_accuracy_ratio)"
WINDOW_COST_REDUCTION = "max(splitee_eval_window_cost_reduction_ratio)"
WINDOW_OFFLOAD = "max(splitee_eval_window_offload_ratio)"
FINAL_EXIT_COST = "max(splitee_eval_final_exit_cost)"

ACCURACY_BY_PHASE = (
    "sum by (distortion) (splitee_eval_correct_total) "
    "/ sum by (distortion) (splitee_eval_frames_total)"
)
COST_REDUCTION_BY_PHASE = (
    "1 - sum by (distortion) (splitee_eval_cost_total) "
    "/ (sum by (distortion) (splitee_eval_frames_total) "
    "* scalar(max(splitee_eval_final_exit_cost)))"
)
OFFLOAD_BY_PHASE = (
    "sum by (distortion) (splitee_eval_offloaded_total) "
    "/ sum by (distortion) (splitee_eval_frames_total)"
)


def accuracy_by_camera(w: str) -> str:
    return (
        f"sum by (camera) (rate(splitee_eval_correct_total[{w}])) "
        f"/ sum by (camera) (rate(splitee_eval_frames_total[{w}]))"
    )


def accuracy_by_phase_rate(w: str) -> str:
    return (
        f"sum by (distortion) (rate(splitee_eval_correct_total[{w}])) "
        f"/ sum by (distortion) (rate(splitee_eval_frames_total[{w}]))"
    )


def exits_by_arm(w: str) -> str:
    return f"sum by (arm) (rate(splitee_exits_total[{w}]))"


def offloads_by_arm(w: str) -> str:
    return f"sum by (arm) (rate(splitee_offloads_total[{w}]))"


def offload_fraction(w: str) -> str:
    return (
        f"sum(rate(splitee_offloads_total[{w}])) / (sum(rate(splitee_exits_total[{w}])) "
        f"+ sum(rate(splitee_offloads_total[{w}])))"
    )


def cost_per_frame(w: str) -> str:
    return f"sum(rate(splitee_cost_total[{w}])) / sum(rate(splitee_frames_out_total[{w}]))"


def sent_by_phase(w: str) -> str:
    return f"sum by (camera, distortion) (rate(splitee_frames_sent_total[{w}]))"
