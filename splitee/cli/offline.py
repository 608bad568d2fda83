"""Offline commands: train, evaluate, evaluate-shift."""

from __future__ import annotations

from pathlib import Path

import click

from splitee import policy_setup
from splitee.cli.options import comma_list, given, model_option, out_dir_option, settings_of

# Options of `splitee train` by mode: the CIFAR ResNets (splitee/training/train.py) and a
# registered backbone (splitee/training/train_backbone.py). An option of the other mode is an
# error, never ignored.
BOTH = {"backbone", "epochs", "batch_size", "limit", "test_limit", "seed", "out"}
BACKBONE_ONLY = {"images", "finetune_tail"}


@click.command()
@click.option("--arch", default=None, help="resnet20/32/44/56 (default: model.arch).")
@click.option(
    "--backbone",
    default=None,
    help="A registered backbone other than the CIFAR ResNets (efficientnet-lite0, "
    "mobilenet_v2, or one from [model.backbones]): train its exits on real-size frames.",
)
@click.option(
    "--data",
    "images",
    default=None,
    help="With --backbone: 'caltech101' (data.images) or a folder/zip of class sub-folders.",
)
@click.option(
    "--finetune-tail",
    is_flag=True,
    help="With --backbone: also train the backbone after its last exit (slow on a CPU).",
)
@click.option("--epochs", default=None, type=int, help="Default: the trainer's (8; 12 backbone).")
@click.option("--batch-size", default=None, type=int)
@click.option("--lr", "lr_backbone", default=None, type=float, help="Backbone learning rate.")
@click.option("--lr-heads", default=None, type=float, help="Exit heads' learning rate.")
@click.option("--augment-distortions", is_flag=True, help="Train on noisy/blurred frames too.")
@click.option("--limit", default=None, type=int, help="Use only N training frames (smoke run).")
@click.option("--holdout", default=None, type=int, help="Frames kept aside for temperatures.")
@click.option("--test-limit", default=None, type=int, help="Evaluate on N test frames only.")
@click.option("--no-bf16", is_flag=True, help="Train in fp32 (slower on CPU).")
@click.option(
    "--head", type=click.Choice(["conv1", "conv2"]), default=None, help="Exit head design."
)
@click.option(
    "--init",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Start from this multi-exit checkpoint instead of the pretrained backbone.",
)
@click.option("--heads-only", is_flag=True, help="Freeze the backbone; train the exits only.")
@click.option(
    "--distill", type=float, default=None, help="Weight of distillation from the final exit (0..1)."
)
@click.option(
    "--channel-noise",
    is_flag=True,
    help="Train the cloud part (after --noise-arm) on analog-channel features; needs --init.",
)
@click.option("--noise-arm", type=int, default=None, help="1-based split (default: channel.arm).")
@click.option("--noise-snr", default=None, help="SNR range in dB: lo,hi (default: -5,20).")
@click.option("--seed", default=None, type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.pass_context
def train(ctx: click.Context, **_: object) -> None:
    """Fine-tune backbone and exits; write a safetensors checkpoint and a JSON model card.

    Only the options given reach the trainer's config: every default is the config's or the
    settings'.
    """
    s = settings_of(ctx)
    opts = given(ctx)
    backbone = opts.get("backbone")
    real_size = backbone is not None and not backbone.startswith("resnet")
    allowed = BOTH | BACKBONE_ONLY if real_size else set(ctx.params) - BACKBONE_ONLY
    wrong = [p for p in ctx.command.params if p.name in set(opts) - allowed]
    if wrong:
        names = ", ".join(p.opts[0] for p in wrong)
        mode = f"--backbone {backbone}" if real_size else "the CIFAR ResNets"
        raise click.UsageError(f"{names}: not used when training {mode}")
    out = opts.pop("out", None)
    if real_size:
        from splitee.cli.backbone_train import train_backbone_command

        del opts["backbone"]
        train_backbone_command(s, backbone, opts.pop("images", None), out, **opts)
        return
    _train_resnet(s, opts, out)


def _train_resnet(s, opts: dict, out: Path | None) -> None:
    """``splitee train`` for a CIFAR ResNet, from the options given."""
    from splitee.data import load_from_settings
    from splitee.models.checkpoint import resolve_device
    from splitee.training.train import TrainConfig, summarise
    from splitee.training.train import train as run_train

    if "backbone" in opts:  # --backbone resnet20 names the architecture
        opts.setdefault("arch", opts.pop("backbone"))
    if opts.pop("no_bf16", False):
        opts["bf16"] = False
    if "noise_snr" in opts:
        opts["noise_snr_db"] = comma_list(opts.pop("noise_snr"), float)
    test_limit = opts.pop("test_limit", None)
    cfg = TrainConfig.from_settings(s, **opts)
    if cfg.channel_noise and not cfg.init:
        raise click.UsageError("--channel-noise needs --init CHECKPOINT (the model to adapt)")
    train_set = load_from_settings("train", s)
    test_set = load_from_settings("test", s)
    if test_limit:
        test_set = test_set.subset(test_limit)
    out = out or s.model.checkpoint
    card = run_train(
        cfg, train_set, test_set, s.model.pretrained_dir, out, resolve_device(s.model.device)
    )
    click.echo(summarise(card))
    click.echo(f"wrote {out}")


# evaluate's options that are EvalConfig fields (the others pick the model and data)
EVAL_FIELDS = {
    "runs", "distortions", "gamma", "mu", "alpha", "offload_cost", "beta", "seed", "alpha_grid",
    "sweep_o",
}  # fmt: skip


@click.command()
@model_option
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Data folder or a JPEG zip (default: data.dir).",
)
@out_dir_option
@click.option("--runs", type=int, default=None, help="Random stream orders (default: eval.runs).")
@click.option("--limit", type=int, default=None, help="A seeded random subset of N test frames.")
@click.option("--distortions", default=None, help="Comma list, e.g. pristine,noise:0.1,blur:1.0")
@click.option("--gamma", type=float, default=None)
@click.option("--mu", type=float, default=None)
@click.option("--alpha", type=float, default=None)
@click.option("--o", "offload_cost", type=float, default=None, help="Offload cost o.")
@click.option("--beta", type=float, default=None)
@click.option("--seed", type=int, default=None)
@click.option(
    "--alpha-grid",
    default=None,
    help="Comma list of thresholds: also learn the (arm, α) pair, e.g. 0.5,0.7,0.9",
)
@click.option(
    "--sweep-o", default=None, help="Comma list of offload costs to sweep, e.g. 0.1,0.2,..."
)
@click.pass_context
def evaluate(
    ctx: click.Context,
    model_path: Path | None,
    data_dir: Path | None,
    out_dir: Path,
    limit: int | None,
    **_: object,
) -> None:
    """Offline reproduction: every method replayed over cached exit outputs."""
    from splitee.data import find_source, load_source
    from splitee.evaluate.runner import EvalConfig, model_outputs, run_evaluation, write_outputs
    from splitee.files import checkpoint_metadata
    from splitee.models.bottleneck_checkpoint import is_bottleneck_checkpoint, load_bottlenecks

    s = settings_of(ctx)
    bottleneck = None  # a bottleneck checkpoint evaluates its base model, then through it
    if model_path is not None and is_bottleneck_checkpoint(model_path):
        bottleneck, model_path = model_path, load_bottlenecks(model_path).base_path
    opts = {k: v for k, v in given(ctx).items() if k in EVAL_FIELDS}
    for name in ("sweep_o", "alpha_grid"):
        if name in opts:
            opts[name] = comma_list(opts[name], float)
    if "distortions" in opts:
        opts["distortions"] = comma_list(opts["distortions"])
    cfg = EvalConfig.from_settings(s, model_path, **opts)
    model = model_path or s.model.checkpoint
    if "backbone" in checkpoint_metadata(model):
        from splitee.cli.backbone_train import evaluate_backbone

        evaluate_backbone(s, cfg, model, data_dir, limit, out_dir, bottleneck)
        return
    if bottleneck is not None:
        raise click.UsageError("learned bottlenecks are for real-size backbones")
    data = data_dir or s.data.dir
    src = data if data is not None and data.suffix == ".zip" else find_source(data, "test")
    dataset = load_source(src, "test", s.data.cache_dir)
    if limit:
        dataset = dataset.subset(limit)
    outputs, info = model_outputs(model, dataset, cfg.distortions, cfg.seed, s.data.cache_dir)
    summary = run_evaluation(outputs, info["exit_depths"], cfg)
    summary["model"] = info
    write_outputs(summary, out_dir)
    click.echo((out_dir / "table.md").read_text())
    click.echo(f"wrote {out_dir}/summary.json, table.md and plots")


@click.command("evaluate-shift")
@model_option
@out_dir_option
@click.option(
    "--phases",
    default=None,
    help="Comma list (default: pristine,noise:0.1,blur:1.0,brightness:0.4,pristine).",
)
@click.option("--phase-frames", type=int, default=None, help="Frames per phase (default: 1000).")
@click.option("--cameras", type=int, default=None, help="Default: 2.")
@click.option("--runs", type=int, default=None, help="Default: 5.")
@click.pass_context
def evaluate_shift(ctx: click.Context, model_path: Path | None, out_dir: Path, **_: object) -> None:
    """Shift experiment: distortions change every N frames; global vs per-camera policies."""
    from splitee.data import load_from_settings
    from splitee.distortions import Distortion
    from splitee.evaluate.runner import model_outputs
    from splitee.evaluate.shift import ShiftConfig, shift_experiment, write_shift

    s = settings_of(ctx)
    p = s.policy
    opts = {
        k: v for k, v in given(ctx).items() if k in ("phases", "phase_frames", "cameras", "runs")
    }
    if "phases" in opts:
        opts["phases"] = tuple(str(Distortion.parse(x)) for x in comma_list(opts["phases"]))
    cfg = ShiftConfig.from_settings(s, **opts)
    dataset = load_from_settings("test", s)
    mp = model_path or s.model.checkpoint
    specs = list(dict.fromkeys(cfg.phases))
    outs, info = model_outputs(mp, dataset, specs, p.seed, s.data.cache_dir)
    a = policy_setup.alpha(s, mp)
    cm_args = {"gamma": p.gamma, "mu": p.mu, "alpha": a, "offload_cost": p.offload_cost}
    summary = shift_experiment(
        {str(o.distortion): o.outputs for o in outs},
        dataset.labels,
        info["exit_depths"],
        cm_args,
        cfg,
    )
    summary["model"] = info
    write_shift(summary, out_dir)
    click.echo((out_dir / "table.md").read_text())
