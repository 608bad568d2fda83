"""Running the cloud's suffixes fast: eager on a CPU, bf16 + channels-last + CUDA graphs on a GPU.

A ResNet-56 suffix over a batch of ≤ 64 small feature maps is launch-bound on a GPU: eager
PyTorch spends more time launching kernels than computing. On CUDA this runner therefore
captures one CUDA graph per (arm, padded batch size) — batches are padded up to the next
power of two, so a handful of graphs serve every batch — in bf16 with channels-last memory,
and replays it; the first batch of each shape pays the capture. On a CPU (no CUDA) it runs the
suffix eagerly, as before. ``bench/cloud_gpu.py`` times the three ways side by side.
"""

from __future__ import annotations

import torch


def padded(n: int) -> int:
    """The batch size a graph is captured for: the next power of two (at least 1).

    >>> [padded(n) for n in (1, 3, 8, 33)]
    [1, 4, 8, 64]
    """
    return 1 << max(0, (n - 1).bit_length())


#: a captured graph with its static input and output tensors
_Captured = tuple["torch.cuda.CUDAGraph", torch.Tensor, torch.Tensor]


class SuffixRunner:
    """``runner(x, arm) -> final logits (float32)`` for features ``x`` of split arm ``arm``."""

    def __init__(self, model: torch.nn.Module, device: torch.device, graphs: bool = True) -> None:
        self.model = model
        self.device = device
        self.cuda = device.type == "cuda"
        self.graphs = graphs and self.cuda
        self._captured: dict[tuple[int, int], _Captured] = {}  # (arm, padded batch) -> graph
        if self.cuda:
            self.model = self.model.to(device, dtype=torch.bfloat16)
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, arm: int) -> torch.Tensor:
        if not self.cuda:
            return self.model.suffix(x, arm).float()
        x = x.to(self.device, torch.bfloat16, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)
        if not self.graphs:
            return self.model.suffix(x, arm).float()
        n = x.shape[0]
        graph, static_in, static_out = self._graph(arm, padded(n), x)
        static_in[:n].copy_(x)
        graph.replay()
        return static_out[:n].float()

    def _graph(self, arm: int, size: int, like: torch.Tensor):
        key = (arm, size)
        if key not in self._captured:
            static_in = torch.zeros(
                (size, *like.shape[1:]), dtype=like.dtype, device=self.device
            ).contiguous(memory_format=torch.channels_last)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm up outside the graph, as CUDA graphs need
                for _ in range(3):
                    self.model.suffix(static_in, arm)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.model.suffix(static_in, arm)
            self._captured[key] = (graph, static_in, static_out)
        return self._captured[key]
