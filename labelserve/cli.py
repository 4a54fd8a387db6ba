"""`labelserve data|train|export|demo|visualize|serve`: argument parsing only; the work lives in the packages.

Imports happen inside each command, so `labelserve serve` never loads torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

logger = logging.getLogger("labelserve")
_NOISY_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch._export", "torch.export", "matplotlib", "PIL")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _cmd_data(args: argparse.Namespace) -> int:
    if args.task == "objects":
        from training.data.synthetic import generate_objects_dataset

        written = generate_objects_dataset(Path(args.out), num_train=args.train, num_val=args.val,
                                           image_size=args.image_size, seed=args.seed, workers=args.workers)
    else:
        from training.data.synthetic_attributes import generate_attributes_dataset

        written = generate_attributes_dataset(Path(args.out), num_train=args.train, num_val=args.val,
                                              height=args.image_size, width=args.image_size // 2, seed=args.seed,
                                              workers=args.workers)
    for split, path in written.items():
        logger.info("%s: %s", split, path)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.train import run_training

    config = load_config(args.config, args.overrides)
    result = run_training(config, show_progress=not args.no_progress)
    logger.info("best checkpoint %s: %s", result.best_checkpoint,
                ", ".join(f"{k} {v:.4f}" for k, v in result.best_metrics.items()))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from export.repository import export_bundle

    bundle, report = export_bundle(
        Path(args.checkpoint), Path(args.repository), args.name, version=args.version, max_batch=args.max_batch,
        parity_images=[Path(p) for p in args.parity_images] if args.parity_images else None,
        tolerance=args.tolerance, with_attention=not args.no_attention, torch_program=args.torch_program,
        tensorrt=args.tensorrt, tensorrt_precision=args.tensorrt_precision,
    )
    logger.info("exported %s (parity max abs diff %s)", bundle.path, report.max_abs_diff)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from export.demo import build_demo_model

    bundle = build_demo_model(Path(args.repository), Path(args.workdir), force=args.force)
    logger.info("demo model ready at %s (val mAP %.4f)", bundle.path, bundle.manifest.metrics.get("mAP", float("nan")))
    return 0


def _cmd_visualize(args: argparse.Namespace) -> int:
    from training.visualize import predict_file, render_panel

    image_paths = [Path(p) for p in args.images]
    items = [predict_file(Path(args.model), path) for path in image_paths]
    out = Path(args.out) if args.out else image_paths[0].with_name(f"{image_paths[0].stem}.labels.png")
    render_panel(items, out, top_k=args.top_k, max_maps=args.max_maps)
    logger.info("wrote %s", out)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    overrides = {k: v for k, v in {"model_repository": args.repository, "host": args.host, "port": args.port}.items()
                 if v is not None}
    settings = Settings(**overrides)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                timeout_graceful_shutdown=settings.drain_timeout_s)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labelserve", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="generate a synthetic benchmark: objects (COCO json) or attributes (CSV)")
    data.add_argument("task", choices=["objects", "attributes"], help="which synthetic task")
    data.add_argument("--out", required=True, help="output folder")
    data.add_argument("--train", type=int, default=4000, help="training images")
    data.add_argument("--val", type=int, default=800, help="validation images")
    data.add_argument("--image-size", type=int, default=160,
                      help="objects: side of the square images; attributes: height (width is half), in pixels")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--workers", type=int, default=2, help="rendering processes")
    data.set_defaults(func=_cmd_data)

    train = commands.add_parser("train", help="train a model from a YAML config")
    train.add_argument("--config", help="YAML file (configs/*.yaml)")
    train.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                       help="override config keys, e.g. optim.lr=3e-4 data.batch_size=64")
    train.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    train.set_defaults(func=_cmd_train)

    export = commands.add_parser("export", help="export a checkpoint to ONNX into a model repository")
    export.add_argument("checkpoint", help="checkpoint file written by `labelserve train`")
    export.add_argument("--repository", required=True, help="model repository root")
    export.add_argument("--name", required=True, help="model name in the repository")
    export.add_argument("--version", type=int, help="version number (default: newest + 1)")
    export.add_argument("--max-batch", type=int, default=32, help="largest batch the service may run")
    export.add_argument("--parity-images", nargs="*", help="images or folders for the parity check")
    export.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |torch - onnxruntime|")
    export.add_argument("--no-attention", action="store_true", help="export logits only")
    export.add_argument("--torch-program", action="store_true",
                        help="also ship a torch.export program (model.pt2) for the service's torch engine")
    export.add_argument("--tensorrt", action="store_true",
                        help="also build a TensorRT plan (model.plan) for this machine's GPU and TensorRT version")
    export.add_argument("--tensorrt-precision", choices=["fp32", "fp16"], default="fp32",
                        help="precision of the TensorRT plan (fp16: TensorRT 10 only)")
    export.set_defaults(func=_cmd_export)

    demo = commands.add_parser("demo", help="build the demo model (synthetic data -> train -> export) if missing")
    demo.add_argument("--repository", default="models", help="model repository root")
    demo.add_argument("--workdir", default=".cache/demo", help="where data and the training run are kept")
    demo.add_argument("--force", action="store_true", help="rebuild even if a demo model exists")
    demo.set_defaults(func=_cmd_demo)

    visualize = commands.add_parser("visualize",
                                    help="render images' top labels and attention maps to one PNG (a row per image)")
    visualize.add_argument("model", help="a checkpoint file (best.pt) or a bundle folder (models/<name>[/<version>])")
    visualize.add_argument("images", nargs="+", help="the images to look at")
    visualize.add_argument("--out", help="PNG to write (default: <first image>.labels.png beside it)")
    visualize.add_argument("--top-k", type=int, default=5, help="labels listed above each image")
    visualize.add_argument("--max-maps", type=int, default=6, help="attention overlays per image, at most")
    visualize.set_defaults(func=_cmd_visualize)

    serve = commands.add_parser("serve", help="serve every model in a repository over HTTP")
    serve.add_argument("--repository", help="model repository root (LABELSERVE_MODEL_REPOSITORY)")
    serve.add_argument("--host", help="bind address (LABELSERVE_HOST)")
    serve.add_argument("--port", type=int, help="port (LABELSERVE_PORT)")
    serve.set_defaults(func=_cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `labelserve` command."""
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
