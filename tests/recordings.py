"""Recordings for tests, written without a broker from a camera's frames."""

from __future__ import annotations

import json

from producers.camera import Camera
from producers.schedule import Schedule
from splitee.recording import Record, RecordingWriter


def camera_recording(
    out, frames, n, schedule=("pristine",), order="fixed", fps=25.0, batch_rows=100
) -> None:
    """A recording of one camera's ``n`` frames (and their truth), timestamped at ``fps``."""
    cam = Camera(
        camera_id="cam-1",
        source=frames,
        schedule=Schedule.parse(list(schedule)),
        fps=fps,
        order=order,
        seed=1,
    )
    w = RecordingWriter(out, [("frames", "frames"), ("truth", "truth")], batch_rows=batch_rows)
    t0 = 1_700_000_000_000
    for seq, f in enumerate(cam.frames(n, clock=lambda: 1.7e9)):
        ts = t0 + int(seq * 1000 / fps)
        truth = {
            "label": f.label,
            "camera_id": "cam-1",
            "distortion": f.distortion,
            "index": f.index,
            "run_id": "",
        }
        w.add(Record("frames", 0, seq, ts, b"cam-1", f.meta.headers(), f.jpeg))
        w.add(Record("truth", 0, seq, ts, f.meta.frame_id.encode(), [], json.dumps(truth).encode()))
    w.close("count")
