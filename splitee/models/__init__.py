"""Multi-exit models and their split API: the CIFAR ResNets (``MultiExitNet``) and any torch
backbone cut at its exits (``SplitBackboneNet``), their registry, checkpoints and profiles."""

from splitee.models.checkpoint import load_checkpoint, save_checkpoint
from splitee.models.inputs import to_input
from splitee.models.multi_exit import EarlyExitResult, MultiExitNet, default_exit_depths
from splitee.models.resnet import CifarResNet, load_pretrained, pretrained_file

__all__ = [
    "CifarResNet",
    "EarlyExitResult",
    "MultiExitNet",
    "default_exit_depths",
    "load_checkpoint",
    "load_pretrained",
    "pretrained_file",
    "save_checkpoint",
    "to_input",
]
