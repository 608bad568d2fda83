"""A deployment's cameras from its settings: what `splitee produce` and the test harness run."""

from __future__ import annotations

from producers.camera import Frame
from producers.fleet import build_cameras
from splitee.jpeg import encode_jpeg
from splitee.settings import CameraSettings, load_settings

TOML = """
[producer]
jpeg_quality = 70
run_id = "from-settings"
[[producer.cameras]]
id = "cam-a"
fps = 5
order = "fixed"
seed = 3
schedule = ["pristine@2f", "noise:0.1@2f"]
cycle = true
[[producer.cameras]]
id = "cam-b"
[channel]
enabled = true
process = "rayleigh:10"
"""


def test_cameras_follow_their_settings_and_the_given_overrides(tmp_path, sample_frames):
    (tmp_path / "s.toml").write_text(TOML)
    s = load_settings(tmp_path / "s.toml")
    frames = [Frame(encode_jpeg(sample_frames.images[i]), i, i) for i in range(3)]
    a, b = build_cameras(s, frames)
    assert (a.camera_id, a.fps, a.order, a.seed, a.jpeg_quality) == ("cam-a", 5, "fixed", 3, 70)
    assert a.schedule.cycle and a.run_id == "from-settings" and b.camera_id == "cam-b"
    assert a.channel is not None and next(iter(a.frames(1))).meta.snr_db is not None

    (only,) = build_cameras(s, frames, [CameraSettings(id="cam-x", seed=1)], fps=0, run_id="")
    assert (only.camera_id, only.fps, only.seed, only.run_id) == ("cam-x", 0, 1, "")
