"""A deployment's cameras, built from its settings in one place.

``splitee produce`` and the test harness (:meth:`splitee.testing.Pipeline.stream`) both build
their cameras here, so a test streams what a deployment streams: the same schedules, re-encode
quality, run id and — with the simulated channel on — each camera's own SNR process.
"""

from __future__ import annotations

from collections.abc import Iterable

from producers.camera import Camera, Frame
from producers.schedule import Schedule
from splitee.settings import CameraSettings, Settings


def build_cameras(
    s: Settings,
    frames: list[Frame],
    specs: Iterable[CameraSettings] | None = None,
    *,
    fps: float | None = None,
    run_id: str | None = None,
) -> list[Camera]:
    """One camera per spec (default: ``producer.cameras``), each streaming ``frames``.

    ``fps`` replaces every camera's frame rate (0: as fast as possible; None: each spec's own),
    ``run_id`` the tag every frame carries (None: ``producer.run_id``)."""
    ps = s.producer
    cameras = []
    for cs in ps.cameras if specs is None else specs:
        channel = None
        if s.channel.enabled:
            from splitee.link import camera_process  # torch: only for the simulated channel

            channel = camera_process(s.channel.process, cs.id, cs.seed)
        cameras.append(
            Camera(
                camera_id=cs.id,
                source=frames,
                schedule=Schedule.parse(cs.schedule, cs.cycle),
                fps=cs.fps if fps is None else fps,
                order=cs.order,
                seed=cs.seed,
                jpeg_quality=ps.jpeg_quality,
                run_id=ps.run_id if run_id is None else run_id,
                channel=channel,
            )
        )
    return cameras
