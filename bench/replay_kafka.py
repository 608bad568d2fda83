"""Benchmark: replay throughput into Kafka (messages and MB per second), on this machine.

Replays a recording (default: the shipped ``assets/recording-5k``, 5,000 frames + 5,000 truth
records) at ``--speed max`` into fresh topics through the idempotent ``acks=all`` producer,
``--loops`` times, and times it from the first send to the last acknowledgement (the final
flush). Starts the servers through ``deploy/servers-up.sh`` when they are not running (ports from
``SPLITEE_KAFKA_PORT`` …) and deletes its topics afterwards. Prints one JSON line.

Usage: .venv/bin/python bench/replay_kafka.py [--rec assets/recording-5k] [--loops 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import uuid
from pathlib import Path

from splitee.kafka_io import delete_topics
from splitee.machine import machine_description
from splitee.recording import open_recording
from splitee.replay import replay_to_kafka
from splitee.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rec", type=Path, default=REPO / "assets" / "recording-5k")
    ap.add_argument("--loops", type=int, default=3)
    args = ap.parse_args()
    subprocess.run(
        ["bash", str(REPO / "deploy" / "servers-up.sh")], check=True, stdout=subprocess.DEVNULL
    )
    tag = uuid.uuid4().hex[:8]
    os.environ["SPLITEE_KAFKA__FRAMES_TOPIC"] = f"bench{tag}-frames"
    os.environ["SPLITEE_KAFKA__TRUTH_TOPIC"] = f"bench{tag}-truth"
    s = Settings()
    rec = open_recording(args.rec)
    try:
        st = replay_to_kafka(s, rec, speed=None, loops=args.loops, progress=False)
    finally:
        delete_topics(s.kafka, [s.kafka.frames_topic, s.kafka.truth_topic])
    frames = rec.topic("frames").table.num_rows * args.loops
    print(
        json.dumps(
            {
                "bench": "replay_kafka",
                "recording": str(args.rec),
                "loops": args.loops,
                "messages": st.messages,
                "mb": round(st.bytes / 1e6, 3),
                "seconds": round(st.seconds, 3),
                "msg_per_s": round(st.msg_per_s),
                "mb_per_s": round(st.mb_per_s, 2),
                "frames_per_s": round(frames / st.seconds),
                "delivery": "idempotent producer, acks=all, timed to the last acknowledgement",
                "machine": machine_description(),
            }
        )
    )


if __name__ == "__main__":
    main()
