"""Offline commands: train, evaluate, evaluate-shift."""

from __future__ import annotations

from pathlib import Path

import click

from splitee import policy_setup
from splitee.cli.options import model_option, out_dir_option, settings_of


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
@click.option("--epochs", default=8, show_default=True, type=int)
@click.option("--batch-size", default=256, show_default=True, type=int)
@click.option("--lr", "lr_backbone", default=0.02, show_default=True, type=float)
@click.option("--lr-heads", default=0.1, show_default=True, type=float)
@click.option("--augment-distortions", is_flag=True, help="Train on noisy/blurred frames too.")
@click.option("--limit", default=None, type=int, help="Use only N training frames (smoke run).")
@click.option("--holdout", default=2000, show_default=True, type=int)
@click.option("--test-limit", default=None, type=int, help="Evaluate on N test frames only.")
@click.option("--no-bf16", is_flag=True, help="Train in fp32 (slower on CPU).")
@click.option(
    "--head",
    type=click.Choice(["conv1", "conv2"]),
    default="conv1",
    show_default=True,
    help="Exit head design.",
)
@click.option(
    "--init",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Start from this multi-exit checkpoint instead of the pretrained backbone.",
)
@click.option("--heads-only", is_flag=True, help="Freeze the backbone; train the exits only.")
@click.option(
    "--distill",
    type=float,
    default=0.0,
    show_default=True,
    help="Weight of distillation from the final exit (0..1).",
)
@click.option(
    "--channel-noise",
    is_flag=True,
    help="Train the cloud part (after --noise-arm) on analog-channel features; needs --init.",
)
@click.option("--noise-arm", type=int, default=None, help="1-based split (default: channel.arm).")
@click.option("--noise-snr", default="-5,20", show_default=True, help="SNR range in dB: lo,hi.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.pass_context
def train(
    ctx: click.Context,
    arch: str | None,
    backbone: str | None,
    images: str | None,
    finetune_tail: bool,
    epochs: int,
    batch_size: int,
    lr_backbone: float,
    lr_heads: float,
    augment_distortions: bool,
    limit: int | None,
    holdout: int,
    test_limit: int | None,
    no_bf16: bool,
    head: str,
    init: str | None,
    heads_only: bool,
    distill: float,
    channel_noise: bool,
    noise_arm: int | None,
    noise_snr: str,
    seed: int,
    out: Path | None,
) -> None:
    """Fine-tune backbone and exits; write a safetensors checkpoint and a JSON model card."""
    from splitee.data import load_from_settings
    from splitee.models.checkpoint import resolve_device
    from splitee.training.train import TrainConfig, summarise
    from splitee.training.train import train as run_train

    s = settings_of(ctx)
    if backbone is not None and not backbone.startswith("resnet"):
        from splitee.cli.backbone_train import train_backbone_command

        train_backbone_command(
            s, backbone, images, epochs, limit, test_limit, seed, out, finetune_tail
        )
        return
    cfg = TrainConfig(
        arch=arch or s.model.arch,
        exit_every=s.model.exit_every,
        epochs=epochs,
        batch_size=batch_size,
        lr_backbone=lr_backbone,
        lr_heads=lr_heads,
        augment_distortions=augment_distortions,
        bf16=not no_bf16,
        holdout=holdout,
        seed=seed,
        limit=limit,
        head=head,
        init=init,
        heads_only=heads_only,
        distill=distill,
        channel_noise=channel_noise,
        noise_arm=noise_arm or s.channel.arm,
        noise_snr_db=[float(v) for v in noise_snr.split(",")],
    )
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
    runs: int | None,
    limit: int | None,
    distortions: str | None,
    gamma: float | None,
    mu: float | None,
    alpha: float | None,
    offload_cost: float | None,
    beta: float | None,
    seed: int | None,
    alpha_grid: str | None,
    sweep_o: str | None,
) -> None:
    """Offline reproduction: every method replayed over cached exit outputs."""
    from splitee.data import find_source, load_source
    from splitee.evaluate.runner import EvalConfig, model_outputs, run_evaluation, write_outputs
    from splitee.files import checkpoint_metadata

    s = settings_of(ctx)
    p = s.policy
    cfg = EvalConfig(
        gamma=p.gamma if gamma is None else gamma,
        mu=p.mu if mu is None else mu,
        alpha=policy_setup.alpha(s, model_path) if alpha is None else alpha,
        offload_cost=p.offload_cost if offload_cost is None else offload_cost,
        beta=p.beta if beta is None else beta,
        runs=s.eval.runs if runs is None else runs,
        seed=p.seed if seed is None else seed,
        sweep_o=[float(v) for v in sweep_o.split(",")] if sweep_o else [],
        alpha_grid=[float(v) for v in alpha_grid.split(",")] if alpha_grid else [],
        distortions=distortions.split(",") if distortions else s.eval.distortions,
    )
    model = model_path or s.model.checkpoint
    if "backbone" in checkpoint_metadata(model):
        from splitee.cli.backbone_train import evaluate_backbone

        evaluate_backbone(s, cfg, model, data_dir, limit, out_dir)
        return
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
    default=",".join(("pristine", "noise:0.1", "blur:1.0", "brightness:0.4", "pristine")),
    show_default=True,
)
@click.option("--phase-frames", type=int, default=1000, show_default=True)
@click.option("--cameras", type=int, default=2, show_default=True)
@click.option("--runs", type=int, default=5, show_default=True)
@click.pass_context
def evaluate_shift(
    ctx: click.Context,
    model_path: Path | None,
    out_dir: Path,
    phases: str,
    phase_frames: int,
    cameras: int,
    runs: int,
) -> None:
    """Shift experiment: distortions change every N frames; global vs per-camera policies."""
    from splitee.data import load_from_settings
    from splitee.distortions import Distortion
    from splitee.evaluate.runner import model_outputs
    from splitee.evaluate.shift import ShiftConfig, shift_experiment, write_shift

    s = settings_of(ctx)
    p = s.policy
    specs = tuple(str(Distortion.parse(x)) for x in phases.split(","))
    dataset = load_from_settings("test", s)
    mp = model_path or s.model.checkpoint
    outs, info = model_outputs(mp, dataset, list(dict.fromkeys(specs)), p.seed, s.data.cache_dir)
    cfg = ShiftConfig(
        specs,
        phase_frames,
        cameras,
        runs,
        p.seed,
        discount=p.discount,
        window=p.window,
        beta=p.beta,
    )
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
