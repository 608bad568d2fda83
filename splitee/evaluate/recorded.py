"""Offline A/B of a recorded real-size stream, priced and answered as the live workers are.

A real-size stream (Caltech-101 frames at their own resolution) reaches the edge as JPEGs of
many sizes; the edge fits each to the model's input and — with the send-frame arm, the bytes
or latency cost and a learned bottleneck — sends some frames as the JPEG itself and the others
as coded latents. Replaying such a recording offline needs what the workers have, so that its
figure is the one a live run on the same stream should reach: their cost model
(:func:`splitee.policy_setup.arm_facts` priced by :func:`~splitee.policy_setup.costs_from_facts`:
the same arms, α, FLOPs and bytes), each frame's recorded JPEG size for the send-frame arm, and
the cloud's answer after the codec for each bottleneck arm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from splitee import policy_setup
from splitee.distortions import Distortion
from splitee.evaluate.outputs import exit_outputs
from splitee.evaluate.runner import SettingOutputs
from splitee.settings import Settings


class RecordedWorkers:
    """The live workers' model, cost model and codec for a real-size checkpoint.

    ``send``: arm 0 sends the frame (its JPEG); ``cost_model`` is over the workers' arms
    (arm 0 first when ``send``); ``codec``: the bottleneck of ``model.bottleneck``, or None.
    """

    def __init__(self, s: Settings, model_path: Path) -> None:
        from splitee.files import sha256_file
        from splitee.models import load_checkpoint
        from splitee.models.backbones import register_from_settings

        register_from_settings(s)
        self.settings = s
        self.model = load_checkpoint(model_path)
        self.digest = sha256_file(model_path)
        self.codec = policy_setup.latent_codec(s, self.model)
        self.facts = policy_setup.arm_facts(s, self.model, self.codec)
        self.send, self.cost_model = policy_setup.costs_from_facts(s, self.facts)
        self._fused = None
        self._key = None
        if self.codec is not None:
            self._fused = load_checkpoint(model_path, fuse=True)
            from splitee.evaluate.bottleneck import codec_key

            self._key = codec_key(self.digest, sha256_file(Path(s.model.bottleneck)))

    @property
    def cost_args(self) -> dict:
        """The CostModel fields beyond the papers' constants (``run_evaluation``'s cost_args)."""
        return self.cost_model.beyond_papers()

    def outputs(
        self,
        name: str,
        distortion: Distortion,
        images: np.ndarray,
        jpeg_bytes: np.ndarray,
        labels: np.ndarray,
        seed: int,
        cache_dir: Path | None,
    ) -> SettingOutputs:
        """One group's outputs (setting ``name``, recorded under ``distortion``): the edge's
        exits (with arm 0 in front when the frame is an arm), the cloud's answer per offloaded
        arm, and each offload's bytes."""
        s = self.settings
        # the recorded pixels already carry the distortion: run them through as they are
        out = exit_outputs(self.model, images, Distortion(), seed, cache_dir, self.digest)
        if not self.send:
            return SettingOutputs(distortion, out, labels, name=name)
        n = len(images)
        edge = out.with_frame_arm()
        jpeg = np.asarray(jpeg_bytes, np.float64)[:, None]
        if self.codec is None:
            split = [b[s.edge.codec] for b in self.facts.split_bytes]
            sent = np.concatenate([jpeg, np.tile(np.asarray([*split, 0.0]), (n, 1))], axis=1)
            return SettingOutputs(distortion, edge, labels, offload_bytes=sent, name=name)
        from splitee.evaluate.bottleneck import cloud_outputs

        cloud, size = cloud_outputs(
            self._fused,
            self.codec.bundle,
            self.codec.rates,
            images,
            Distortion(),
            seed,
            cache_dir,
            self._key,
        )
        sent = np.concatenate([jpeg, size], axis=1)
        cl = out.cloud_with_frame_arm(cloud)
        return SettingOutputs(distortion, edge, labels, cloud=cl, offload_bytes=sent, name=name)
