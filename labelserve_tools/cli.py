"""`labelserve data|train|export|demo|visualize|serve|predict|feedback|calibrate|tune|promote`: argument parsing
only; the work lives in the packages.

Imports happen inside each command, so `labelserve serve` never loads torch. A mistake the user can fix
(`labelserve.errors.UserError`) ends as one line on stderr and the exit code of its kind; any other exception is a
bug, shown as one line too unless `--debug` (or LABELSERVE_DEBUG=1) asks for the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from labelserve.errors import EXIT_CODES, ConfigError, DataError, ServingError, UserError

if TYPE_CHECKING:
    from labelserve.client import Client

__all__ = ["main"]

T = TypeVar("T")

_DESCRIPTION = ("Multi-label image classification, from your labelled images to a served model:\n"
                "check the data, train, export to ONNX, serve over HTTP, predict.")
_EPILOG = """first steps (docs/own-images.md walks through them for COCO, VOC, CSV list and attribute data):
  labelserve data check --config configs/pretrained.yaml --set data.train_annotations=train.csv \\
      data.val_annotations=val.csv
  labelserve train      (the same --config and --set, plus output_dir=runs/x)
  labelserve export runs/x/best.pt --repository models --name mymodel
  labelserve serve --repository models
  labelserve predict photo.jpg

exit codes:
""" + "\n".join(f"  {code:<3} {meaning}" for code, meaning in EXIT_CODES.items())

logger = logging.getLogger("labelserve")
_NOISY_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch._export", "torch.export", "matplotlib", "PIL", "httpx",
                  "httpcore")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _cmd_data(args: argparse.Namespace) -> int:
    if args.task == "objects":
        from training.data.synthetic import ObjectsSpec, generate_objects_dataset
        from training.data.synthetic_hard import HARD_OBJECTS

        written = generate_objects_dataset(Path(args.out), num_train=args.train, num_val=args.val,
                                           image_size=args.image_size, seed=args.seed, workers=args.workers,
                                           spec=HARD_OBJECTS if args.hard else ObjectsSpec())
    else:
        from training.data.synthetic_attributes import AttributesSpec, generate_attributes_dataset
        from training.data.synthetic_hard import HARD_ATTRIBUTES

        written = generate_attributes_dataset(Path(args.out), num_train=args.train, num_val=args.val,
                                              height=args.image_size, width=args.image_size // 2, seed=args.seed,
                                              workers=args.workers,
                                              spec=HARD_ATTRIBUTES if args.hard else AttributesSpec())
    for split, path in written.items():
        logger.info("%s: %s", split, path)
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.data.check import check_dataset, format_report

    report = check_dataset(load_config(args.config, args.overrides).data)
    sys.stdout.write(format_report(report))
    if not report.ok:
        raise DataError(f"{report.problem_count} problem{'s' if report.problem_count > 1 else ''} in the dataset, "
                        f"listed above; the first: {report.problems[0]}")
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
        tensorrt=args.tensorrt, tensorrt_precision=args.tensorrt_precision, baseline_images=args.baseline_images,
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
    from pydantic import ValidationError

    from service.repository import RepositoryError, check_repository_root
    from service.server import serve
    from service.settings import Settings

    overrides = {"model_repository": args.repository, "host": args.host, "port": args.port, "workers": args.workers,
                 "grpc_port": args.grpc_port, "grpc": False if args.no_grpc else None,
                 "log_level": "DEBUG" if args.verbose else None}  # the service's JSON logging replaces the CLI's
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"LABELSERVE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"invalid setting: {problems}") from exc
    try:
        check_repository_root(settings.model_repository)
    except RepositoryError as exc:  # found before the server starts: a plain line, not a JSON log record
        raise ServingError(str(exc)) from exc
    return serve(settings)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    from labelserve.bundle import BundleError, list_versions, load_bundle
    from labelserve.calibration import Policy, calibrate
    from labelserve.recalibrate import format_report, write_calibrated_version
    from service.store import StoreConfigError, connect, describe, store_url
    from service.store.schema import migrate
    from service.store.store import read_feedback

    try:
        policy = Policy.parse(args.policy)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    repository, model_dir = Path(args.repository), Path(args.repository) / args.model
    versions = list_versions(model_dir)
    if not versions:
        raise ServingError(f"no version of model {args.model!r} in {repository}")
    version = args.version or versions[-1]
    try:
        source = load_bundle(model_dir / str(version))
    except BundleError as exc:
        raise ServingError(str(exc)) from exc
    weights = source.manifest.files.get("model.onnx")
    same_weights = [v for v in versions if load_bundle(model_dir / str(v)).manifest.files.get("model.onnx") == weights]
    url = store_url(args.store, repository)
    try:
        connection, dialect = connect(url)
        migrate(connection, dialect)
        rows = read_feedback(connection, dialect, args.model, same_weights)
        connection.close()
    except StoreConfigError as exc:
        raise ServingError(str(exc)) from exc
    if not rows:
        raise ServingError(f"no feedback on {args.model} v{', v'.join(map(str, same_weights))} in {describe(url)}: "
                           f"send some first (labelserve feedback, or POST /v2/models/{args.model}/feedback)")
    report = calibrate(source.manifest.labels, source.manifest.thresholds,
                       np.stack([row.probabilities for row in rows]), np.stack([row.truth for row in rows]),
                       [row.id for row in rows], policy, args.min_support, args.holdout)
    sys.stdout.write(format_report(report))
    if args.dry_run or report.changed == 0:
        logger.info("%s: nothing written", "dry run" if args.dry_run else "no threshold moved")
        return 0
    written = write_calibrated_version(source, report)
    logger.info("wrote %s (thresholds recalibrated from %d answers, weights shared with v%d); a running server loads "
                "it within LABELSERVE_REPOSITORY_POLL_S and it answers requests naming no version, unless "
                "config.json pins default_version (then: labelserve promote)", written.path, report.answers, version)
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    from labelserve.bundle import list_versions
    from service.model_config import ModelConfigError, load_model_config, promote_version

    model_dir = Path(args.repository) / args.model
    if not model_dir.is_dir():
        raise ServingError(f"no model {args.model!r} in {args.repository}: `labelserve promote` takes the name of a "
                           "folder of the repository")
    try:
        before = load_model_config(model_dir)
        after = promote_version(model_dir, args.version, list_versions(model_dir))
    except ModelConfigError as exc:
        raise ServingError(str(exc)) from exc
    dropped = [role for role in ("shadow", "canary") if getattr(before, role) and not getattr(after, role)]
    logger.info("%s: version %d now answers requests that name no version (default_version %s -> %d)%s; a running "
                "server applies %s within LABELSERVE_REPOSITORY_POLL_S", args.model, args.version,
                before.default_version or "newest", args.version,
                f", its {' and '.join(dropped)} entry dropped" if dropped else "", model_dir / "config.json")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from labelserve.bundle import list_versions, load_bundle
    from labelserve_tools.tune import (
        KNOBS,
        changed_settings,
        format_trials,
        read_images,
        stand_in_images,
        tune,
        write_config,
    )

    repository, model = Path(args.repository), args.model
    versions = list_versions(repository / model)
    if not versions:
        raise ServingError(f"no version of model {model!r} in {repository}: `labelserve export <best.pt> "
                           f"--repository {repository} --name {model}` makes one")
    bundle = load_bundle(repository / model / str(versions[-1]))
    try:
        payloads = read_images([Path(p) for p in args.images]) if args.images else stand_in_images(bundle)
    except FileNotFoundError as exc:
        raise ConfigError(f"--images: {exc}") from exc
    if not args.images:
        logger.warning("no --images given: measuring with stand-in JPEGs of twice the input size; real images "
                       "measure decoding as your clients will cost it")
    knobs = args.knobs or KNOBS
    result = tune(repository, model, payloads, sorted(args.concurrency), args.latency_budget_ms, args.budget_s,
                  args.seconds, knobs=knobs, confirm=args.confirm)
    sys.stdout.write(format_trials(result, sorted(args.concurrency)) + "\n")
    if result.unmeasured:
        logger.warning("the search was cut short: --budget-s %g ran out after %d of %d planned trials, so %s were "
                       "not measured; the * row is the best of what was (raise --budget-s for the whole search)",
                       args.budget_s, result.planned - len(result.unmeasured), result.planned,
                       ", ".join(result.unmeasured))
    if not result.feasible:
        raise ServingError(f"no setting kept p99 within {args.latency_budget_ms:g} ms (the closest: "
                           f"{result.best.p99_ms():.0f} ms); config.json left as it is: raise --latency-budget-ms, or "
                           "serve this model on a faster machine")
    path = repository / model / "config.json"
    changed = changed_settings(result, knobs)
    if not changed:
        logger.info("no setting measured better than the starting ones (%s); %s left as it is",
                    ", ".join(f"{k} {result.start[k]}" for k in knobs), path)
        return 0
    if args.dry_run:
        logger.info("dry run: %s left as it is; the search would write %s", path, changed)
        return 0
    write_config(repository / model, changed)
    logger.info("wrote %s into %s (measured better than %s; used when the service next loads %s)", changed, path,
                {k: result.start[k] for k in changed}, model)
    return 0


def _ask_server(args: argparse.Namespace, call: Callable[[Client], T]) -> T | None:
    """`call` on a client of the server at `args.url`; None, with the one-line reason on stderr, when the server
    refused (its error and status) or did not answer."""
    import httpx

    from labelserve.client import ApiError, Client

    try:
        with Client(args.url, api_key=args.api_key, timeout_s=args.timeout) as client:
            return call(client)
    except ApiError as error:
        sys.stderr.write(f"error: {error.message} (HTTP {error.status}, {error.code})\n")
    except httpx.HTTPError as error:
        sys.stderr.write(f"error: no answer from {args.url}: {error}\n")
    return None


def _cmd_predict(args: argparse.Namespace) -> int:
    from labelserve_tools.predict_report import format_table, write_overlays

    images = [Path(image) for image in args.images]
    missing = [str(image) for image in images if not image.is_file()]
    if missing:
        sys.stderr.write(f"error: no such file: {', '.join(missing)}\n")
        return 2
    answer = _ask_server(args, lambda client: client.predict(images, top_k=args.top_k, threshold=args.threshold,
                                                             attention=args.attention is not None, model=args.model))
    if answer is None:
        return 1
    sys.stdout.write(answer.model_dump_json(exclude_none=True) + "\n" if args.json else format_table(answer))
    if args.attention is not None:
        for path in write_overlays(answer, images, Path(args.attention)):
            logger.info("wrote %s", path)
    return 0


def _cmd_feedback(args: argparse.Namespace) -> int:
    if args.labels is None and not (args.confirm or args.reject):
        raise ConfigError("say what is in the image: --labels (every present label; none for an empty image), or "
                          "--confirm and/or --reject")
    known = _ask_server(args, lambda client: client.feedback(args.model, args.id, labels=args.labels,
                                                             confirm=args.confirm or (), reject=args.reject or ()))
    if known is None:
        return 1
    sys.stdout.write(f"{known.id} ({known.model} v{known.version}): present {', '.join(known.present) or 'none'}; "
                     f"absent {', '.join(known.absent) or 'none'}; {known.unknown} labels not said\n")
    return 0


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return number


def _config_arguments(command: argparse.ArgumentParser) -> None:
    """--config and --set, shared by `train` and `data check` so both read the same dataset."""
    command.add_argument("--config", help="YAML file; configs/pretrained.yaml and configs/demo.yaml are starting "
                                          "points (docs/own-images.md)")
    command.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                         help="override config keys, e.g. data.train_annotations=data/train.csv optim.epochs=10")


def _data_parsers(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="check a dataset, or generate a synthetic one")
    kinds = data.add_subparsers(dest="task", required=True)
    check = kinds.add_parser("check", help="read both splits as `train` will and decode every image: counts per "
                                           "label and split, and the first problems with file and line")
    _config_arguments(check)
    check.set_defaults(func=_cmd_data_check)
    for task, what in (("objects", "synthetic scenes of 20 object classes, as a COCO dataset (JPEGs + instances "
                                   "json)"),
                       ("attributes", "synthetic figures with 25 binary attributes, as an attribute table (CSV)")):
        synthetic = kinds.add_parser(task, help=what)
        synthetic.add_argument("--out", required=True, help="output folder")
        synthetic.add_argument("--train", type=int, default=4000, help="training images (default: %(default)s)")
        synthetic.add_argument("--val", type=int, default=800, help="validation images (default: %(default)s)")
        synthetic.add_argument("--image-size", type=int, default=160,
                               help="objects: side of the square images; attributes: height (width is half), in "
                                    "pixels (default: %(default)s)")
        synthetic.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
        synthetic.add_argument("--workers", type=int, default=2, help="rendering processes (default: %(default)s)")
        synthetic.add_argument("--hard", action="store_true",
                               help="the hard variant (training/data/synthetic_hard.py): objects with 48 long-tailed "
                                    "labels, small, occluded, among distractors; figures smaller and occluded")
        synthetic.set_defaults(func=_cmd_data)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labelserve", description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also LABELSERVE_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True)
    _data_parsers(commands)

    train = commands.add_parser("train", help="train a model from a YAML config (the dataset is checked first)")
    _config_arguments(train)
    train.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    train.set_defaults(func=_cmd_train)

    export = commands.add_parser("export", help="export a checkpoint to ONNX into a model repository")
    export.add_argument("checkpoint", help="checkpoint file written by `labelserve train`")
    export.add_argument("--repository", required=True, help="model repository root")
    export.add_argument("--name", required=True, help="model name in the repository")
    export.add_argument("--version", type=int, help="version number (default: newest + 1)")
    export.add_argument("--max-batch", type=int, default=32,
                        help="largest batch the service may run (default: %(default)s)")
    export.add_argument("--parity-images", nargs="*", help="images or folders for the parity check (default: images "
                                                           "of the checkpoint's validation split)")
    export.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest allowed |torch - onnxruntime| per unit of an output's largest magnitude (>= 1; "
                             "default: %(default)s)")
    export.add_argument("--no-attention", action="store_true", help="export logits only")
    export.add_argument("--torch-program", action="store_true",
                        help="also ship a torch.export program (model.pt2) for the service's torch engine")
    export.add_argument("--tensorrt", action="store_true",
                        help="also build a TensorRT plan (model.plan) for this machine's GPU and TensorRT version")
    export.add_argument("--tensorrt-precision", choices=["fp32", "fp16"], default="fp32",
                        help="precision of the TensorRT plan (fp16: TensorRT 10 only; default: %(default)s)")
    export.add_argument("--baseline-images", type=int, default=2000,
                        help="validation images answered to write the bundle's baseline, which label monitoring "
                             "compares served answers with; 0 for none (default: %(default)s)")
    export.set_defaults(func=_cmd_export)

    demo = commands.add_parser("demo", help="build the demo model (synthetic data -> train -> export) if missing")
    demo.add_argument("--repository", default="models", help="model repository root (default: %(default)s)")
    demo.add_argument("--workdir", default=".cache/demo",
                      help="where data and the training run are kept (default: %(default)s)")
    demo.add_argument("--force", action="store_true", help="rebuild even if a demo model exists")
    demo.set_defaults(func=_cmd_demo)

    visualize = commands.add_parser("visualize",
                                    help="render images' top labels and attention maps to one PNG (a row per image)")
    visualize.add_argument("model", help="a checkpoint file (best.pt) or a bundle folder (models/<name>[/<version>])")
    visualize.add_argument("images", nargs="+", help="the images to look at")
    visualize.add_argument("--out", help="PNG to write (default: <first image>.labels.png beside it)")
    visualize.add_argument("--top-k", type=int, default=5, help="labels listed above each image (default: "
                                                                  "%(default)s)")
    visualize.add_argument("--max-maps", type=int, default=6,
                           help="attention overlays per image, at most (default: %(default)s)")
    visualize.set_defaults(func=_cmd_visualize)

    serve = commands.add_parser("serve", help="serve every model in a repository over HTTP and gRPC")
    serve.add_argument("--repository", help="model repository root (LABELSERVE_MODEL_REPOSITORY)")
    serve.add_argument("--host", help="bind address (LABELSERVE_HOST)")
    serve.add_argument("--port", type=int, help="port (LABELSERVE_PORT)")
    serve.add_argument("--grpc-port", type=int, help="port of the Open Inference Protocol over gRPC "
                                                     "(LABELSERVE_GRPC_PORT, default 8001; 0: the kernel picks)")
    serve.add_argument("--no-grpc", action="store_true", help="HTTP only (LABELSERVE_GRPC=false)")
    serve.add_argument("--workers", type=int, help="server processes sharing the port, each with its own batchers and "
                                                   "engines (LABELSERVE_WORKERS, default 1)")
    serve.set_defaults(func=_cmd_serve)
    calibrate_cmd = commands.add_parser("calibrate", help="new per-label thresholds from the feedback users sent, "
                                                          "as a new model version sharing the weights")
    calibrate_cmd.add_argument("model", help="model name")
    calibrate_cmd.add_argument("--repository", default="models", help="model repository root (default: %(default)s)")
    calibrate_cmd.add_argument("--version", type=int, help="the version to recalibrate (default: the newest); "
                                                            "feedback on every version with the same weights counts")
    calibrate_cmd.add_argument("--store", help="the feedback store's URL (default: the server's: "
                                               "<repository>-feedback.sqlite3 beside the repository)")
    calibrate_cmd.add_argument("--policy", default="f1",
                               help="f1, precision:P (highest recall at precision >= P) or recall:R (highest "
                                    "precision at recall >= R) (default: %(default)s)")
    calibrate_cmd.add_argument("--min-support", type=int, default=30,
                               help="labels with fewer known answers to fit on keep their threshold "
                                    "(default: %(default)s)")
    calibrate_cmd.add_argument("--holdout", type=float, default=0.3,
                               help="share of the feedback held out to measure before and after "
                                    "(default: %(default)s)")
    calibrate_cmd.add_argument("--dry-run", action="store_true", help="print the report, write nothing")
    calibrate_cmd.set_defaults(func=_cmd_calibrate)

    promote = commands.add_parser("promote", help="make a model version the one that answers requests naming no "
                                                   "version (after watching it as a shadow or a canary)")
    promote.add_argument("--repository", default="models", help="model repository root (default: %(default)s)")
    promote.add_argument("--model", required=True, help="model name")
    promote.add_argument("--version", type=int, required=True, help="the version to promote")
    promote.set_defaults(func=_cmd_promote)
    tune_cmd = commands.add_parser("tune", help="measure serving settings for one model on this machine and write "
                                                 "those measured better into <repository>/<model>/config.json")
    tune_cmd.add_argument("--repository", default="models", help="model repository root (default: %(default)s)")
    tune_cmd.add_argument("--model", required=True, help="model name (its newest version is measured)")
    tune_cmd.add_argument("--images", nargs="*", help="image files or folders to send (default: stand-in JPEGs)")
    tune_cmd.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32],
                          help="closed-loop client counts to measure in every trial (default: %(default)s)")
    tune_cmd.add_argument("--latency-budget-ms", type=float,
                          help="p99 every concurrency must stay within (default: throughput only)")
    tune_cmd.add_argument("--budget-s", type=_positive, default=600.0,
                          help="stop starting trials after this many seconds; the trials left are listed "
                               "(default: %(default)s)")
    tune_cmd.add_argument("--seconds", type=_positive, default=5.0,
                          help="measuring time per concurrency per trial (default: %(default)s)")
    tune_cmd.add_argument("--knobs", nargs="+", choices=["max_batch_size", "intra_op_threads", "decode_threads",
                                                          "intra_op_spinning", "max_queue_delay_ms", "engine"],
                          help="which settings to search, in order (default: all, in this order)")
    tune_cmd.add_argument("--dry-run", action="store_true", help="print the table and what would change; write "
                                                                 "nothing")
    tune_cmd.add_argument("--no-confirm", dest="confirm", action="store_false",
                          help="adopt a faster setting on one trial, without measuring it and the best again")
    tune_cmd.set_defaults(func=_cmd_tune)

    predict = commands.add_parser("predict", help="label images with a running server; print a table per image")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    predict.add_argument("--url", default=os.environ.get("LABELSERVE_URL", "http://127.0.0.1:8000"),
                         help="the server (default: $LABELSERVE_URL or http://127.0.0.1:8000)")
    predict.add_argument("--api-key", default=os.environ.get("LABELSERVE_API_KEY"),
                         help="sent as X-API-Key (default: $LABELSERVE_API_KEY)")
    predict.add_argument("--model", help="model name (default: the server's first)")
    predict.add_argument("--top-k", type=int, help="show only the k most probable labels")
    predict.add_argument("--threshold", type=float, help="decide every label at this probability")
    predict.add_argument("--attention", metavar="DIR",
                         help="write each predicted label's attention over its image to DIR/<image>.<label>.png")
    predict.add_argument("--json", action="store_true", help="print the API's JSON answer instead of tables")
    predict.add_argument("--timeout", type=float, default=60.0,
                         help="seconds to wait for the answer (default: %(default)s)")
    predict.set_defaults(func=_cmd_predict)

    feedback = commands.add_parser("feedback", help="say what was really in an answered image (the id `predict` "
                                                     "printed), so `labelserve calibrate` can learn from it")
    feedback.add_argument("id", help="the answer's id")
    feedback.add_argument("--model", required=True, help="the model that answered")
    feedback.add_argument("--labels", nargs="*", metavar="LABEL",
                          help="every label that is present (the others are absent); none: an empty image")
    feedback.add_argument("--confirm", nargs="+", metavar="LABEL", help="labels known to be present")
    feedback.add_argument("--reject", nargs="+", metavar="LABEL", help="labels known to be absent")
    feedback.add_argument("--url", default=os.environ.get("LABELSERVE_URL", "http://127.0.0.1:8000"),
                          help="the server (default: $LABELSERVE_URL or http://127.0.0.1:8000)")
    feedback.add_argument("--api-key", default=os.environ.get("LABELSERVE_API_KEY"),
                          help="sent as X-API-Key (default: $LABELSERVE_API_KEY)")
    feedback.add_argument("--timeout", type=float, default=30.0, help="seconds (default: %(default)s)")
    feedback.set_defaults(func=_cmd_feedback)
    return parser


def _one_line(error: BaseException) -> str:
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `labelserve` command; returns the exit code (`labelserve --help` lists them)."""
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose)
    debug = args.debug or os.environ.get("LABELSERVE_DEBUG", "").strip() not in ("", "0")
    try:
        return int(args.func(args))
    except UserError as error:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {_one_line(error)}\n")
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except OSError as error:  # the system said no (permission, disk full, a file that went away): its words suffice
        if debug:
            raise
        sys.stderr.write(f"error: {_one_line(error)}\n")
        return 1
    except Exception as error:  # a bug, not the user's mistake: one line unless asked for the traceback
        if debug:
            raise
        sys.stderr.write(f"error: {type(error).__name__}: {_one_line(error)} (unexpected; run again with --debug, or "
                         "LABELSERVE_DEBUG=1, for the traceback)\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
