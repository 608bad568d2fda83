"""Learned bottlenecks around the split points of an unmodified multi-exit backbone.

For split arm k the edge runs ``z = encode_k(prefix(x, k))`` and sends ``z`` quantized and
entropy-coded; the cloud runs ``suffix(decode_k(ẑ), k)``. The exits keep seeing the raw prefix
tensor: the codec sits beside the backbone, never inside it (the backbone's weights and its
``suffix`` are untouched, as torchdistill's hooks leave a model untouched).

Why this shape (supervised compression for split computing: Matsubara et al.'s head network
distillation and Entropic Student; Ballé et al.'s factorized prior):

* the encoder is small (space-to-depth where the tensor is larger than 28×28, a 1×1 and one
  or two 3×3 convolutions), so an arm's edge cost grows by a few percent of the backbone's
  FLOPs;
* latents are quantized with a step ``Δ`` per *rate point* (``ẑ = round(z / Δ) · Δ``): one
  trained encoder and decoder serve several rates, each its own arm for the bandit, because
  training samples Δ from the rate points;
* the training-time rate is a factorized density per latent channel (a monotone CDF as in
  Ballé et al., 2018), evaluated on ``z`` so every rate point shares it; the deployed integer
  tables are measured histograms of the training latents (:mod:`splitee.entropy`), so the
  coder's bytes follow the data, not the density's approximation;
* encoder input and decoder output are the prefix tensor standardised per channel (statistics
  from the training cache), so every channel weighs the same in the distortion.

Deep, small tensors get a *scalar* codec instead (:class:`ScalarEncoder`): the standardised
tensor itself is the latent, quantized with the same steps and coded with the same measured
tables — no transform to learn. The deeper a split, the more of each value the suffix needs:
on EfficientNet-Lite0's 14×14 and 7×7 tensors (arms 3–5) it kept the unsplit model's top-1
within about a point at 1.5–4.5 kB per frame, where the learned codecs, squeezed to 48–64
channels, stayed 3–5 points under at any rate; on the 56×56 and 28×28 tensors the learned
codecs win (arm 1: 93.5 % at 4.2 kB against the scalar codec's 93.7 % at 11 kB).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True, kw_only=True)
class CodecSpec:
    """Shape of one arm's codec: what it reads and how it compresses."""

    in_shape: tuple[int, int, int]  # (C, H, W) of the prefix tensor at this arm
    down: int  # stride-2 convolutions in the encoder (latent is H / 2**down)
    hidden: int  # width of the encoder's and decoder's hidden layers
    latent: int  # latent channels
    # 3×3 convolutions in the encoder (the last one makes the latent); checkpoints written
    # before the field existed had 2
    convs: int = 2
    # "learned" (encoder and decoder networks) or "scalar" (the standardised tensor is the
    # latent, times ``gain``: step Δ quantizes it in units of Δ / gain standard deviations)
    kind: str = "learned"
    gain: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("learned", "scalar"):
            raise ValueError(f"codec kind {self.kind!r}: 'learned' or 'scalar'")
        if not 0 < self.gain <= 1e3:
            raise ValueError(f"codec gain {self.gain} out of (0, 1000]")
        if self.kind == "scalar" and (self.down, self.latent) != (0, self.in_shape[0]):
            raise ValueError("a scalar codec's latent is its input tensor")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        _, h, w = self.in_shape
        s = 2**self.down
        return (self.latent, -(-h // s), -(-w // s))

    @property
    def tag(self) -> str:
        """A short name of the shape (training states are keyed by it: another shape never
        resumes from them)."""
        if self.kind == "scalar":
            return f"scalar-g{self.gain:g}"
        base = f"d{self.down}h{self.hidden}l{self.latent}"
        return base if self.convs == 2 else f"{base}c{self.convs}"

    def to_json(self) -> dict:
        d = {
            "in_shape": list(self.in_shape),
            "down": self.down,
            "hidden": self.hidden,
            "latent": self.latent,
            "convs": self.convs,
        }
        if self.kind != "learned":  # older readers see the specs they know unchanged
            d |= {"kind": self.kind, "gain": self.gain}
        return d

    @classmethod
    def from_json(cls, d: dict) -> CodecSpec:
        return cls(
            in_shape=tuple(int(v) for v in d["in_shape"]),
            down=int(d["down"]),
            hidden=int(d["hidden"]),
            latent=int(d["latent"]),
            convs=int(d.get("convs", 2)),
            kind=str(d.get("kind", "learned")),
            gain=float(d.get("gain", 1.0)),
        )


#: Scalar codecs' gain: the shared steps 1 · 2 · 4 · 6 quantize the standardised tensor at
#: ⅓ · ⅔ · 1⅓ · 2 standard deviations, the range where the deep arms go from near-lossless
#: to about a point under the unsplit model (arm 3 at 2 σ: 2.5 kB, arm 5: 1.5 kB per frame)
SCALAR_GAIN = 3.0


def scalar_spec(in_shape: Sequence[int], gain: float = SCALAR_GAIN) -> CodecSpec:
    """A scalar codec for a prefix tensor of ``in_shape``: the tensor itself is the latent."""
    c, h, w = (int(v) for v in in_shape)
    return CodecSpec(
        in_shape=(c, h, w), down=0, hidden=0, latent=c, convs=0, kind="scalar", gain=gain
    )


def default_spec(in_shape: Sequence[int]) -> CodecSpec:
    """A codec for a prefix tensor of ``in_shape``: the latent keeps the tensor's resolution up
    to 28×28 (larger tensors are downsampled by 2 per side until they are), and the larger
    its side, the fewer its channels.

    Why the resolution is kept: squeezed to 14×14 (48 channels), EfficientNet-Lite0's 56×56
    arm-1 tensor reconstructed alone let the suffix agree with the unsplit model on 19 % of
    test frames (stage 1 only), at 28×28 (32 channels) on 53 %, and distillation from there
    went further; the deeper arms squeezed by 2 stayed 9–13 points under the unsplit model
    (docs/bottleneck.md). Why one 3×3 convolution where the latent is 14×14 or larger: the
    encoder runs on the edge and its FLOPs are part of the arm's cost — a second 3×3 at 28×28
    (64 wide) put arm 1 at 32 % of the backbone's FLOPs; one puts it at 25 %, and with the
    papers' constants (γ·ℓ_L = 1.7, o = 0.5) every 10 MFLOPs more is 0.02 of arm 1's cost,
    which has to stay under cloud-only's 0.5."""
    c, h, w = (int(v) for v in in_shape)
    down = 0
    while h // 2**down > 28 and h % 2 ** (down + 1) == 0 and w % 2 ** (down + 1) == 0:
        down += 1  # space-to-depth needs whole blocks
    side = h // 2**down
    latent = 32 if side >= 28 else 48 if side >= 14 else 64
    if side >= 14:
        return CodecSpec(in_shape=(c, h, w), down=down, hidden=64, latent=latent, convs=1)
    return CodecSpec(in_shape=(c, h, w), down=down, hidden=128, latent=latent, convs=2)


class ArmEncoder(nn.Module):
    """Edge side: standardised prefix tensor → continuous latent (quantized by the caller).

    Space-to-depth first (PixelUnshuffle by 2**down), then a 1×1 and ``convs`` 3×3
    convolutions at the latent's resolution: all the work happens on few pixels, where a CPU's
    GEMMs are efficient, instead of strided convolutions on the large shallow tensor."""

    def __init__(self, spec: CodecSpec) -> None:
        super().__init__()
        c = spec.in_shape[0]
        s = 2**spec.down
        self.register_buffer("mean", torch.zeros(1, c, 1, 1))
        self.register_buffer("std", torch.ones(1, c, 1, 1))
        layers: list[nn.Module] = [
            nn.PixelUnshuffle(s),
            nn.Conv2d(c * s * s, spec.hidden, 1),
            nn.ReLU(inplace=True),
        ]
        for _ in range(spec.convs - 1):
            layers += [nn.Conv2d(spec.hidden, spec.hidden, 3, 1, 1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(spec.hidden, spec.latent, 3, 1, 1))
        self.net = nn.Sequential(*layers)
        with torch.no_grad():  # latents start well above the quantization step
            self.net[-1].weight.mul_(8.0)
            self.net[-1].bias.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net((h - self.mean) / self.std)


class ArmDecoder(nn.Module):
    """Cloud side: dequantized latent → the prefix tensor (in the backbone's own scale).

    Mirror of the encoder: 3×3 convolutions at the latent's resolution, a 1×1 to
    ``C · 4**down`` channels and depth-to-space (PixelShuffle) back to the prefix's size."""

    def __init__(self, spec: CodecSpec) -> None:
        super().__init__()
        c, h, w = spec.in_shape
        s = 2**spec.down
        self.out_hw = (h, w)
        self.register_buffer("mean", torch.zeros(1, c, 1, 1))
        self.register_buffer("std", torch.ones(1, c, 1, 1))
        width = max(spec.hidden, 128)
        self.net = nn.Sequential(
            nn.Conv2d(spec.latent, width, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, c * s * s, 1),
            nn.PixelShuffle(s),
        )

    def forward_std(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction in standardised units (what training compares)."""
        y = self.net(z)
        if tuple(y.shape[-2:]) != self.out_hw:
            y = y[..., : self.out_hw[0], : self.out_hw[1]]
        return y

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward_std(z) * self.std + self.mean


class _Standardised(nn.Module):
    """The per-channel statistics and the gain a scalar codec's two sides share."""

    def __init__(self, spec: CodecSpec) -> None:
        super().__init__()
        c = spec.in_shape[0]
        self.gain = spec.gain
        self.register_buffer("mean", torch.zeros(1, c, 1, 1))
        self.register_buffer("std", torch.ones(1, c, 1, 1))


class ScalarEncoder(_Standardised):
    """Edge side of a scalar codec: the prefix tensor standardised per channel, times the gain.
    Nothing to learn: the statistics come from the training tensors, the coding tables from
    their histograms."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return (h - self.mean) / self.std * self.gain


class ScalarDecoder(_Standardised):
    """Cloud side of a scalar codec: the dequantized latent back in the backbone's scale."""

    def forward_std(self, z: torch.Tensor) -> torch.Tensor:
        return z / self.gain

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward_std(z) * self.std + self.mean


class FactorizedDensity(nn.Module):
    """One learned univariate CDF per latent channel (Ballé et al., 2018, appendix 6.1):
    a small monotone network ``c(z)``; ``sigmoid(c)`` is the CDF. Used for the training rate
    only: it is differentiable in z and shared by every rate point."""

    def __init__(self, channels: int, filters: Sequence[int] = (3, 3, 3), init_scale: float = 10):
        super().__init__()
        dims = [1, *filters, 1]
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = float(torch.log(torch.expm1(torch.tensor(1 / scale / dims[i + 1]))))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, v: torch.Tensor) -> torch.Tensor:
        """``v``: (C, 1, N) points per channel → (C, 1, N) CDF logits."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases, strict=True)):
            v = torch.matmul(F.softplus(m), v) + b
            if i < len(self.factors):
                v = v + torch.tanh(self.factors[i]) * torch.tanh(v)
        return v

    def bits(self, z: torch.Tensor, step: float) -> torch.Tensor:
        """Bits to code ``z`` (N, C, H, W, already noisy: z/step + U(−½, ½) scaled back by
        step) with bins of width ``step``; summed per frame → (N,)."""
        n, c = z.shape[:2]
        v = z.transpose(0, 1).reshape(c, 1, -1)
        lower = self.logits_cdf(v - step / 2)
        upper = self.logits_cdf(v + step / 2)
        sign = -torch.sign(lower + upper).detach()  # stable difference of two sigmoids
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        bits = -torch.log2(p.clamp_min(1e-9))
        return bits.reshape(c, n, -1).sum(dim=(0, 2))


class ArmCodec(nn.Module):
    """Encoder, decoder and training density of one split arm, with its rate points."""

    def __init__(self, spec: CodecSpec, steps: Sequence[float]) -> None:
        super().__init__()
        self.spec = spec
        self.steps = [float(s) for s in steps]
        scalar = spec.kind == "scalar"
        self.encoder = ScalarEncoder(spec) if scalar else ArmEncoder(spec)
        self.decoder = ScalarDecoder(spec) if scalar else ArmDecoder(spec)
        self.density = FactorizedDensity(spec.latent)

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-channel statistics of the prefix tensor, shared by encoder and decoder."""
        for m in (self.encoder, self.decoder):
            m.mean.copy_(mean.view_as(m.mean))
            m.std.copy_(std.clamp_min(1e-3).view_as(m.std))

    def quantize(self, h: torch.Tensor, rate: int) -> torch.Tensor:
        """Edge: prefix tensor → integer latent symbols (int32) at rate point ``rate``."""
        return torch.round(self.encoder(h) / self.steps[rate]).to(torch.int32)

    def dequantize(self, q: torch.Tensor, rate: int) -> torch.Tensor:
        """Cloud: integer latent → the prefix tensor the suffix runs on."""
        return self.decoder(q.to(self.decoder.mean.dtype) * self.steps[rate])


class Bottlenecks(nn.Module):
    """One :class:`ArmCodec` per split arm of a backbone (arm k codes ``prefix(x, k)``)."""

    def __init__(self, specs: Sequence[CodecSpec], steps: Sequence[float]) -> None:
        super().__init__()
        self.steps = [float(s) for s in steps]
        self.codecs = nn.ModuleList(ArmCodec(s, steps) for s in specs)

    def trainable(self, k: int) -> bool:
        """Whether arm ``k``'s codec has weights to train (a scalar codec has none)."""
        return self.codecs[k].spec.kind == "learned"

    @property
    def num_arms(self) -> int:
        return len(self.codecs)

    @property
    def num_rates(self) -> int:
        return len(self.steps)

    def latent_shape(self, k: int) -> tuple[int, int, int]:
        return self.codecs[k].spec.latent_shape


def module_flops(module: nn.Module, in_shape: Sequence[int]) -> int:
    """FLOPs of ``module`` on one input of ``in_shape`` (C, H, W), counted as the backbone's
    profile counts them (torch's FlopCounterMode: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False)
    with torch.no_grad(), fc:
        module(torch.zeros(1, *in_shape))
    return int(fc.get_total_flops())
