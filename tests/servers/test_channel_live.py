"""The live pipeline over a Gilbert-Elliott link with the learned transmission decision.

Cameras stamp each frame's SNR from their own good/bad Markov chain (20 dB / -5 dB); the edge
worker keeps or transmits each frame with the classifier `splitee evaluate-channel` learned
(fitted at split arm 7, so the policy is pinned to arm 7); the cloud worker adds the analog
link's noise. The edge's metrics must show fewer transmissions in the bad state.
"""

from __future__ import annotations

import json
import re
import urllib.request

from splitee.results import collect_results, collect_truth
from splitee.testing import Pipeline, free_port
from tests.conftest import REPO

TD_FILE = REPO / "docs" / "channel" / "analog" / "td-learned.json"


def td_counts(port: int) -> dict[tuple[str, str], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("splitee_td_decisions_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = (labels["snr_band"], labels["decision"])
            out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def test_transmissions_drop_in_the_bad_channel_state(servers, tmp_path):
    p = Pipeline.create(
        tmp_path,
        SPLITEE_CHANNEL__ENABLED="true",
        SPLITEE_CHANNEL__MODE="analog",
        SPLITEE_CHANNEL__PROCESS="ge:20,-5,0.05,0.05",
        SPLITEE_CHANNEL__TD="learned",
        SPLITEE_CHANNEL__TD_FILE=str(TD_FILE),
        SPLITEE_POLICY__NAME="fixed:7",
    )
    metrics_port = free_port()
    p.start("edge", "edge-1", metrics_port)
    p.start("cloud", "cloud-1")
    try:
        p.wait_ready(edge=1, cloud=1)
        sent = json.loads(p.cli("produce", "--count", "300", "--fps", "300", "--run-id", "ge"))
        assert sum(sent["sent"].values()) == 600
        k = p.settings.kafka
        truth = collect_truth(k)
        view = collect_results(k, set(truth), timeout_s=240, run_id="ge")
        assert set(view.results) == set(truth)  # every frame answered, kept or transmitted
        counts = td_counts(metrics_port)
    finally:
        p.stop()

    def sent_share(band: str) -> float:
        keep, send = counts.get((band, "keep"), 0.0), counts.get((band, "transmit"), 0.0)
        assert keep + send > 20, f"too few frames in band {band}: {counts}"
        return send / (keep + send)

    good, bad = sent_share(">=10dB"), sent_share("<0dB")
    print(f"transmitted: good state {good:.1%}, bad state {bad:.1%}; {counts}")
    assert bad < good, counts
    where = {r.where for r in view.results.values()}
    assert where == {"edge", "cloud"}
