"""The records a worker's batch step consumes and produces, independent of any Kafka client.

Every role's step is ``process(list[InRecord]) -> StepOutput``: what to publish (results,
offloads, dead letters) and the policy deltas the batch earned. The worker runtime
(:mod:`splitee.worker.runtime`) turns faust events into :class:`InRecord` and publishes the output;
the steps themselves never see Kafka, so they are tested without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from policy_store.stats import Delta


@dataclass(frozen=True)
class InRecord:
    """A consumed Kafka record, as the batch steps see it."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    topic: str
    partition: int
    offset: int
    #: the record's Kafka timestamp in seconds (the producer's send time, or the broker's with
    #: LogAppendTime); None where there is none, as in offline replays
    timestamp: float | None = None
    #: the timestamp is the broker's append time (the topic's message.timestamp.type is
    #: LogAppendTime): when the record reached the broker, not when it was sent
    log_append: bool = False


@dataclass
class OutRecord:
    """A record to publish (to the results or offload topic)."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class DeadLetter:
    """A consumed record that could not be processed, and why (a bounded ``reason`` slug)."""

    record: InRecord
    reason: str
    detail: str


@dataclass
class StepOutput:
    """Everything one batch produced."""

    results: list[OutRecord] = field(default_factory=list)
    offloads: list[OutRecord] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    deltas: dict[str, Delta] = field(default_factory=dict)

    def extend(self, other: StepOutput) -> None:
        """Append ``other``'s records; deltas of the same policy merge (:meth:`Delta.merge`)."""
        self.results += other.results
        self.offloads += other.offloads
        self.dead += other.dead
        for key, d in other.deltas.items():
            if key in self.deltas:
                self.deltas[key] = self.deltas[key].merge(d)
            else:
                self.deltas[key] = d
