"""The cluster fault tests' client, run on a host of deploy/hosts.sh (its addresses exist only
inside the topology's network namespaces, so the test process itself cannot reach them):

    deploy/hosts.sh exec core python -m tests.servers.cluster_client results RUN_ID TIMEOUT_S
    deploy/hosts.sh exec core python -m tests.servers.cluster_client leaders TOPIC

``results``: every frame of the run (from its ground truth) and its result through
:class:`splitee.results.ResultsView`, as one JSON object: frames, done_ts per frame with a
result, duplicates dropped, bad records. ``leaders``: partition -> leading broker id.
The settings come from the environment ``hosts.sh exec`` sets.
"""

from __future__ import annotations

import json
import sys

from splitee.kafka_io import admin
from splitee.results import collect_results, collect_truth
from splitee.settings import Settings


def results(run_id: str, timeout_s: float) -> dict:
    k = Settings().kafka
    truth = collect_truth(k, timeout_s=30)
    ids = {f for f, t in truth.items() if t.get("run_id", "") == run_id}
    view = collect_results(k, ids, timeout_s=timeout_s, run_id=run_id)
    return {
        "frames": sorted(ids),
        "done_ts": {f: r.done_ts for f, r in view.results.items() if f in ids},
        "duplicates": view.duplicates,
        "bad": view.bad,
    }


def leaders(topic: str) -> dict[int, int]:
    client = admin(Settings().kafka)
    try:
        (desc,) = client.describe_topics([topic])
        return {p["partition"]: p["leader"] for p in desc["partitions"]}
    finally:
        client.close()


def main(argv: list[str]) -> None:
    if argv[0] == "results":
        print(json.dumps(results(argv[1], float(argv[2]))))
    elif argv[0] == "leaders":
        print(json.dumps(leaders(argv[1])))
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
