"""The ``splitee`` command: one entry point for every role and tool."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from splitee.logs import configure_logging
from splitee.settings import Settings, load_settings


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


@click.group()
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML settings file (else $SPLITEE_CONFIG; environment variables override it).",
)
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """splitee: early-exit inference split between edge and cloud, learned online."""
    try:
        settings = load_settings(config)
    except Exception as exc:  # pydantic's errors already name the field
        raise click.ClickException(f"invalid settings: {exc}") from exc
    configure_logging(settings.log_level)
    ctx.obj = {"settings": settings}


@main.command()
@click.option("--arch", default=None, help="resnet20/32/44/56 (default: model.arch).")
@click.option("--epochs", default=8, show_default=True, type=int)
@click.option("--batch-size", default=256, show_default=True, type=int)
@click.option("--lr", "lr_backbone", default=0.02, show_default=True, type=float)
@click.option("--lr-heads", default=0.1, show_default=True, type=float)
@click.option("--augment-distortions", is_flag=True, help="Train on noisy/blurred frames too.")
@click.option("--limit", default=None, type=int, help="Use only N training frames (smoke run).")
@click.option("--holdout", default=2000, show_default=True, type=int)
@click.option("--test-limit", default=None, type=int, help="Evaluate on N test frames only.")
@click.option("--no-bf16", is_flag=True, help="Train in fp32 (slower on CPU).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.pass_context
def train(ctx: click.Context, **opts: object) -> None:
    """Fine-tune backbone and exits; write a safetensors checkpoint and a JSON model card."""
    from splitee.data import load_from_settings
    from splitee.models.checkpoint import resolve_device
    from splitee.train import TrainConfig, summarise
    from splitee.train import train as run_train

    s = _settings(ctx)
    cfg = TrainConfig(
        arch=str(opts["arch"] or s.model.arch),
        exit_every=s.model.exit_every,
        epochs=int(opts["epochs"]),  # type: ignore[arg-type]
        batch_size=int(opts["batch_size"]),  # type: ignore[arg-type]
        lr_backbone=float(opts["lr_backbone"]),  # type: ignore[arg-type]
        lr_heads=float(opts["lr_heads"]),  # type: ignore[arg-type]
        augment_distortions=bool(opts["augment_distortions"]),
        bf16=not opts["no_bf16"],
        holdout=int(opts["holdout"]),  # type: ignore[arg-type]
        seed=int(opts["seed"]),  # type: ignore[arg-type]
        limit=opts["limit"],  # type: ignore[arg-type]
    )
    train_set = load_from_settings("train", s)
    test_set = load_from_settings("test", s)
    if opts["test_limit"]:
        test_set = test_set.subset(int(opts["test_limit"]))  # type: ignore[arg-type]
    out = opts["out"] or s.model.checkpoint
    card = run_train(
        cfg, train_set, test_set, s.model.pretrained_dir, Path(out), resolve_device(s.model.device)
    )
    click.echo(summarise(card))
    click.echo(f"wrote {out}")


@main.command()
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint (default: model.checkpoint).",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Data folder or a JPEG zip (default: data.dir).",
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--runs", type=int, default=None, help="Random stream orders (default: eval.runs).")
@click.option("--limit", type=int, default=None, help="Use only the first N test frames.")
@click.option("--distortions", default=None, help="Comma list, e.g. pristine,noise:0.1,blur:1.0")
@click.option("--gamma", type=float, default=None)
@click.option("--mu", type=float, default=None)
@click.option("--alpha", type=float, default=None)
@click.option("--o", "offload_cost", type=float, default=None, help="Offload cost o.")
@click.option("--beta", type=float, default=None)
@click.option("--seed", type=int, default=None)
@click.option(
    "--sweep-o", default=None, help="Comma list of offload costs to sweep, e.g. 0.1,0.2,..."
)
@click.pass_context
def evaluate(ctx: click.Context, **o: object) -> None:
    """Offline reproduction: every method replayed over cached exit outputs."""
    from splitee.data import find_source, load_source
    from splitee.evaluate.runner import EvalConfig, model_outputs, run_evaluation, write_outputs

    s = _settings(ctx)
    p = s.policy
    pick = lambda key, default: default if o[key] is None else o[key]  # noqa: E731
    cfg = EvalConfig(
        gamma=pick("gamma", p.gamma),
        mu=pick("mu", p.mu),
        alpha=pick("alpha", p.alpha),
        offload_cost=pick("offload_cost", p.offload_cost),
        beta=pick("beta", p.beta),
        runs=pick("runs", s.eval.runs),
        seed=pick("seed", p.seed),
        sweep_o=[float(v) for v in str(o["sweep_o"]).split(",")] if o["sweep_o"] else [],
        distortions=str(o["distortions"]).split(",") if o["distortions"] else s.eval.distortions,
    )
    data = Path(o["data_dir"]) if o["data_dir"] else s.data.dir  # type: ignore[arg-type]
    src = data if data is not None and data.suffix == ".zip" else find_source(data, "test")
    dataset = load_source(src, "test", s.data.cache_dir)
    if o["limit"]:
        dataset = dataset.subset(int(o["limit"]))  # type: ignore[arg-type]
    model_path = Path(o["model_path"] or s.model.checkpoint)  # type: ignore[arg-type]
    outputs, info = model_outputs(model_path, dataset, cfg.distortions, cfg.seed, s.data.cache_dir)
    summary = run_evaluation(outputs, info["exit_depths"], cfg)
    summary["model"] = info
    out_dir = Path(o["out_dir"])  # type: ignore[arg-type]
    write_outputs(summary, out_dir)
    click.echo((out_dir / "table.md").read_text())
    click.echo(f"wrote {out_dir}/summary.json, table.md and plots")


def run() -> None:  # pragma: no cover - console entry
    sys.exit(main())


__all__ = ["main"]
