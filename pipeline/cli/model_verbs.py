"""The model verbs: `patrol train`, `patrol export`, `patrol eval`.

ultralytics (the `train` extra) is imported only by the commands that train or export a PyTorch
checkpoint; evaluating and making FP16 / INT8 copies of an ONNX model need only the runtime.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pipeline
from pipeline.cli.errors import UsageError

if TYPE_CHECKING:  # the train modules import numpy, OpenCV and the runtime: only the verbs that use them load them
    from pipeline.train.gate import Evaluation
    from pipeline.train.sources import Source
    from pipeline.train.spec import LoadedSpec

REPO = Path(pipeline.__file__).resolve().parents[1]
DEFAULT_SPEC = REPO / "annotations" / "datasets" / "street.yaml"
SHARED = REPO.parent / "shared"
CALIBRATION_VIDEOS = (SHARED / "videos" / "car-detection.mp4", REPO / "streams" / "samples" / "sample-street.mp4")
TRAIN_EXTRA = "install the train extra: pip install -e '.[train]'"
EVENT_VIDEOS = ("sample-street", "parking-lot-cam")  # pipeline.train.report.EVENT_SETS, without importing it


def add_model_verbs(verbs: argparse._SubParsersAction) -> None:
    """Adds `patrol train`, `patrol export` and `patrol eval` to the `patrol` parser."""
    train = verbs.add_parser("train", help="train the detector on a dataset spec (ultralytics), export it to ONNX "
                             "with its model card")
    train.add_argument("spec", help="dataset spec (YAML), e.g. annotations/datasets/street.yaml")
    train.add_argument("--out", required=True, help="ONNX file to write; its card is written beside it")
    train.add_argument("--work", default="var/train", help="folder for the mixed dataset, runs and training.json")
    train.add_argument("--name", help="model name in its card (default: the ONNX file's stem)")
    train.add_argument("--base", default="yolov8n.yaml", help="ultralytics architecture, trained from random init")
    train.add_argument("--init", help="start from an earlier model instead of random init (fine-tuning; the card "
                                      "says so): a run's best.pt/last.pt, or an ONNX that `patrol train` exported, "
                                      "e.g. models/patrol-street.onnx (rebuilt into a --base checkpoint)")
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--imgsz", type=int, default=320, help="training and input size (a multiple of 32)")
    train.add_argument("--batch", type=int, default=16)
    train.add_argument("--hours", type=float, help="wall-time cap; ultralytics fits the epochs to it")
    train.add_argument("--freeze", type=int, default=0, help="keep the first N layers as --init has them (10: the "
                                                             "whole YOLOv8 backbone; fine-tunes faster, forgets less)")
    train.add_argument("--keep-classes", action="store_true",
                       help="keep --init's classes and its whole detection head (a COCO checkpoint goes on knowing "
                            "car, bus, bicycle, person); the project classes it lacks take slots of classes no role "
                            "reads. Without it the model has the project's seven classes and a new head")
    train.add_argument("--eval", action="store_true",
                       help="then run `patrol eval` on the result and quote it in the card")
    train.set_defaults(func=cmd_train)

    export = verbs.add_parser("export", help="ONNX (FP32, FP16 or INT8) with its card, from an ultralytics "
                              "checkpoint or from an FP32 ONNX model with a card")
    export.add_argument("weights", help="best.pt of a `patrol train` run, or an FP32 .onnx with its card")
    export.add_argument("--out", required=True, help="ONNX file to write; its card is written beside it")
    export.add_argument("--training", help="the run's training.json (default: the nearest one above the checkpoint)")
    export.add_argument("--name", help="model name in its card (default: the ONNX file's stem)")
    export.add_argument("--imgsz", type=int, help="input size (default: the run's training size)")
    precision = export.add_mutually_exclusive_group()
    precision.add_argument("--half", action="store_true", help="FP16 weights and arithmetic (IO stays float32)")
    precision.add_argument("--int8", action="store_true",
                           help="INT8 static quantisation (QDQ) calibrated on real frames")
    export.add_argument("--calibration", nargs="+", default=[str(v) for v in CALIBRATION_VIDEOS],
                        help="videos whose frames calibrate --int8 (default: ../shared car-detection + sample street)")
    export.add_argument("--calibration-frames", type=int, default=32, help="frames taken from each calibration video")
    export.add_argument("--eval-report", help="an eval JSON of these very weights whose figures the card quotes")
    export.add_argument("--eval", action="store_true", help="run `patrol eval` on the result and quote it in the card")
    export.set_defaults(func=cmd_export)

    evaluate = verbs.add_parser("eval", help="mAP per class on every held-out set, case precision / recall / "
                                "duplicates on videos with ground truth; JSON + PNG")
    evaluate.add_argument("model", help="ONNX detector with a card")
    evaluate.add_argument("--spec", default=str(DEFAULT_SPEC), help="dataset spec whose held-out splits to measure")
    evaluate.add_argument("--card", action="store_true", help="write the figures into the card beside the model")
    evaluate.set_defaults(func=cmd_eval)
    for parser in (train, export):
        parser.add_argument("--eval-spec", help="with --eval: the dataset spec whose held-out splits to measure "
                            "(default: the training spec)")
    for parser in (train, export, evaluate):
        _add_eval_options(parser)


def _add_eval_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--eval-out", default="var/eval", help="folder for the eval JSON and PNG")
    parser.add_argument("--eval-work", default="var/eval/work",
                        help="scratch: rendered held-out scenes, the re-assembled parking-lot video, replays")
    parser.add_argument("--sets", nargs="+", help="held-out sets to measure (default: every source with one)")
    parser.add_argument("--events", nargs="*", default=list(EVENT_VIDEOS), choices=EVENT_VIDEOS,
                        help="videos with ground truth to replay (none: --events with no value)")
    parser.add_argument("--camera-setting", action="append", metavar="KEY=VALUE", help="a top-level field of the "
                        "event videos' camera files set for this run, as YAML, e.g. adaptive_rate=false (repeatable)")


def _need_ultralytics() -> None:
    try:
        import ultralytics  # noqa: F401
    except ImportError:
        raise UsageError(TRAIN_EXTRA) from None


def _need_onnx() -> None:
    """FP16 conversion and quantisation edit the graph with the `onnx` package (train extra)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UsageError(TRAIN_EXTRA) from None


@dataclass(frozen=True)
class TrainPlan:
    """One training run as asked: where it writes, what it starts from, how long it trains."""

    out: Path
    work: Path
    base: str = "yolov8n.yaml"
    init: Path | None = None  # fine-tune from this checkpoint or `patrol train` ONNX, else random init
    keep_classes: bool = False
    epochs: int = 40
    imgsz: int = 320
    batch: int = 16
    hours: float | None = None
    freeze: int = 0
    name: str | None = None


def cmd_train(args) -> int:
    from pipeline.train.spec import load_spec

    loaded = load_spec(args.spec)
    if args.init is not None and not Path(args.init).is_file():
        raise UsageError(f"--init {args.init}: no such file")
    plan = TrainPlan(out=Path(args.out), work=Path(args.work), base=args.base,
                     init=Path(args.init) if args.init else None, keep_classes=args.keep_classes, epochs=args.epochs,
                     imgsz=args.imgsz, batch=args.batch, hours=args.hours, freeze=args.freeze, name=args.name)
    train_model(loaded, plan)
    if args.eval:
        _eval_into_card(plan.out, args.eval_spec or args.spec, args)
    return 0


def train_model(loaded: LoadedSpec, plan: TrainPlan) -> dict:
    """Mixes ``loaded``'s sources, trains, exports ONNX with its card (`patrol train`, `patrol
    retrain`); returns the run's training.json."""
    from pipeline.train.card import save_card, trained_card
    from pipeline.train.mix import build_mix
    from pipeline.train.run import export_onnx, train
    from pipeline.train.sources import open_sources

    _need_ultralytics()
    if plan.imgsz % 32:
        raise UsageError(f"--imgsz {plan.imgsz}: must be a multiple of 32")
    work, out = plan.work, plan.out
    layout = _layout(plan.keep_classes, plan.init)
    sources = open_sources(loaded)
    counts = build_mix(loaded, sources, work / "mix", teacher=_teacher(loaded, work), layout=layout)
    print(f"train: {sum(counts.values())} images ({', '.join(f'{k} {v}' for k, v in counts.items())}), "
          f"held out: {', '.join(s.name for s in sources.values() if s.holdout_images())}", flush=True)
    start, init = plan.base, None
    if plan.init is not None:
        start, init = _initial_checkpoint(plan.init, work, plan.base)
    best, epochs = train(work / "mix" / "data.yaml", out_dir=work / "runs", epochs=plan.epochs, imgsz=plan.imgsz,
                         hours=plan.hours, batch=plan.batch, model=start, freeze=plan.freeze)
    training = {"dataset": loaded.name, "spec": str(loaded.path), "base": plan.base, "init": init,
                "parent": _parent_record(plan.init) if plan.init else None, "epochs": epochs,
                "classes": list(layout.names), "roles": layout.roles,
                "imgsz": plan.imgsz, "freeze": plan.freeze, "train_images": counts, "weights": str(best),
                "teacher": _teacher_record(loaded),
                "sources": {s.name: {"licence": s.licence, "attribution": s.attribution} for s in sources.values()}}
    (work / "training.json").write_text(json.dumps(training, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    export_onnx(best, out, plan.imgsz)
    card = trained_card(out, training, name=plan.name or out.stem)
    print(f"train: {out} ({epochs} epochs), card {save_card(card, out)}", flush=True)
    return training


def _teacher(loaded, work: Path):
    """The spec's teacher, or None; its labels are cached under ``work``."""
    from pipeline.train.teacher import Teacher

    model = loaded.teacher_model()
    if model is None:
        return None
    if not model.is_file():
        raise UsageError(f"{loaded.path}: teacher.model: no such file {model}")
    return Teacher(model, conf=loaded.spec.teacher.conf, cache=work / "teacher")


def _teacher_record(loaded) -> dict | None:
    model = loaded.teacher_model()
    if model is None:
        return None
    taught = {name: spec.teach for name, spec in loaded.spec.sources.items() if spec.teach}
    return {"model": model.name, "conf": loaded.spec.teacher.conf, "classes": taught}


def _layout(keep_classes: bool, init: Path | None):
    from pipeline.train.layout import PROJECT_LAYOUT, keeping_parent

    if not keep_classes:
        return PROJECT_LAYOUT
    parent = _parent_card(init) if init else None
    if parent is None:
        raise UsageError("--keep-classes: needs an --init with a card (its classes and their roles), e.g. "
                         "../shared/models/yolov8n_coco.pt with models/cards/yolov8n_coco.card.yaml")
    try:
        return keeping_parent(parent)
    except ValueError as exc:
        raise UsageError(f"--keep-classes: {exc}") from None


def _parent_card(init: Path):
    """The card of what the new weights start from: an ONNX's own, a checkpoint's the one named like
    it in models/cards (yolov8n_coco.pt: yolov8n_coco.card.yaml); None when there is none."""
    from pipeline.detect.card import DEFAULT_CARD_DIRS, ModelCardError, load_card, read_card

    if init.suffix == ".onnx":
        try:
            return load_card(init)
        except ModelCardError:
            return None
    named = [directory / f"{init.stem}.card.yaml" for directory in DEFAULT_CARD_DIRS]
    return next((read_card(path) for path in named if path.is_file()), None)


def _parent_record(init: Path) -> dict:
    """What the new weights descend from: the file's sha256, and its card's name and licence."""
    from pipeline.detect.card import sha256_file

    card = _parent_card(init)
    return {"file": init.name, "sha256": sha256_file(init), "name": card.name if card else init.stem,
            "licence": card.licence if card else None}


def _initial_checkpoint(init: Path, work: Path, base: str) -> tuple[str, str]:
    """The checkpoint to fine-tune from and how the card names it; an ONNX is rebuilt into one."""
    if init.suffix != ".onnx":
        return str(init), str(init)
    from pipeline.detect.card import sha256_file
    from pipeline.train.from_onnx import checkpoint_from_onnx

    _need_onnx()
    try:
        rebuilt = checkpoint_from_onnx(init, work / "init" / f"{init.stem}.pt", base=base)
    except ValueError as exc:
        raise UsageError(f"--init {exc}") from None
    print(f"train: starting from {init} (rebuilt as {rebuilt})", flush=True)
    return str(rebuilt), f"{init.name}, sha256 {sha256_file(init)[:12]}…"


def cmd_export(args) -> int:
    from pipeline.detect import ModelCard, load_card
    from pipeline.train.card import save_card, variant_card, with_eval

    weights, out = Path(args.weights), Path(args.out)
    if not weights.is_file():
        raise UsageError(f"{weights}: no such file")
    if weights.resolve() == out.resolve():
        raise UsageError(f"--out {out}: is the input itself")
    if args.half or args.int8:
        _need_onnx()
    precision = "fp16" if args.half else "int8" if args.int8 else None
    with tempfile.TemporaryDirectory() as scratch:
        if weights.suffix == ".onnx":
            fp32, base = weights, load_card(weights)
            if base.metrics.get("precision", "fp32") != "fp32":
                raise UsageError(f"{weights}: is already {base.metrics['precision']}; export from the FP32 model")
        else:
            fp32 = out if precision is None else Path(scratch) / "fp32.onnx"
            # the FP32 model the copy derives from is named as the copy, less its precision suffix
            name = args.name if precision is None and args.name else out.stem.removesuffix(f"-{precision}")
            base = _export_checkpoint(weights, fp32, args, name=name)
        card: ModelCard = base
        if args.half:
            from pipeline.train.precision import to_fp16

            card = variant_card(base, to_fp16(fp32, out), "fp16", name=args.name)
        elif args.int8:
            card = _int8(fp32, base, out, args)
        elif fp32 != out:
            raise UsageError(f"{weights} is an ONNX model already: give --half or --int8")
        if args.eval_report:
            report = json.loads(Path(args.eval_report).read_text(encoding="utf-8"))
            if report["model"]["sha256"] != card.sha256:
                raise UsageError(f"--eval-report {args.eval_report}: measures weights "
                                 f"{report['model']['sha256'][:12]}…, not {out} ({card.sha256[:12]}…)")
            card = with_eval(card, report)
        print(f"export: {out} ({card.metrics.get('precision', 'fp32')}), card {save_card(card, out)}", flush=True)
    if args.eval:
        _eval_into_card(out, args.eval_spec or _training_spec(args, weights), args)
    return 0


def cmd_eval(args) -> int:
    from pipeline.detect import load_card
    from pipeline.train.card import card_path, save_card, with_eval

    model = Path(args.model)
    if not model.is_file():
        raise UsageError(f"{model}: no such file")
    if args.card and not card_path(model).is_file():
        raise UsageError(f"--card: no card beside {model} to write the figures into")
    report, json_path, png_path = _evaluate(model, args.spec, args)
    print(f"eval: {json_path}\neval: {png_path}")
    if args.card:
        print(f"eval: figures written into {save_card(with_eval(load_card(model), report), model)}")
    return 0


@dataclass(frozen=True)
class EvalPlan:
    """What `patrol eval` measures, checked against its spec: held-out sources, labelled videos and
    photos, plate sets, event videos; rendered sets and replays go under ``work``."""

    work: Path
    sources: dict[str, Source]  # those whose held-out split is measured
    parking_lot: Source | None  # the parking-lot-cam source, whose frames its event replay re-assembles
    videos: dict[str, tuple[Path, Path]]
    photos: dict[str, Path]
    plates: dict[str, Path]
    events: tuple[str, ...]
    camera_settings: dict[str, Any] = field(default_factory=dict)  # set over the event videos' camera files


def eval_plan(loaded: LoadedSpec, *, work: Path, sets: list[str] | None, events: list[str]) -> EvalPlan:
    """The held-out ``sets`` (None: all there are) and ``events`` of the spec ``loaded``, as
    `patrol eval --sets … --events …` picks them."""
    from pipeline.train.report import LABELLED_PHOTOS, LABELLED_VIDEOS, PLATE_SETS
    from pipeline.train.sources import open_sources

    sources = open_sources(loaded, holdout_only_in=work / "holdout")
    labelled = [*LABELLED_VIDEOS, *LABELLED_PHOTOS, *PLATE_SETS]
    unknown = sorted(set(sets or ()) - set(sources) - set(labelled))
    if unknown:
        raise UsageError(f"--sets: {', '.join(unknown)} not among the spec's sources ({', '.join(sources)}) "
                         f"nor the labelled sets ({', '.join(labelled)})")
    if "parking-lot-cam" in events and "parking-lot-cam" not in sources:
        raise UsageError(f"--events parking-lot-cam: the spec {loaded.path} has no parking-lot-cam source")
    return EvalPlan(
        work=work,
        sources={name: s for name, s in sources.items() if not sets or name in sets},
        parking_lot=sources.get("parking-lot-cam"),
        videos={name: (video, labels) for name, (video, labels) in LABELLED_VIDEOS.items()
                if video.is_file() and (not sets or name in sets)},
        photos={name: labels for name, labels in LABELLED_PHOTOS.items()
                if (REPO / json.loads(labels.read_text(encoding="utf-8"))["photos"]).is_dir()
                and (not sets or name in sets)},
        plates={name: folder for name, folder in PLATE_SETS.items()
                if (folder / "labels.json").is_file() and (not sets or name in sets)},
        events=tuple(events))


def _evaluate(model: Path, spec: str, args) -> tuple[dict, Path, Path]:
    from pipeline.config import camera_settings
    from pipeline.train.spec import load_spec

    plan = replace(eval_plan(load_spec(spec), work=Path(args.eval_work), sets=args.sets, events=args.events),
                   camera_settings=camera_settings(args.camera_setting or ()))
    evaluation, json_path, png_path = evaluate_planned(model, plan, Path(args.eval_out))
    return evaluation.report, json_path, png_path


def evaluate_planned(model: Path, plan: EvalPlan, out: Path) -> tuple[Evaluation, Path, Path]:
    """``model`` measured on ``plan``'s sets: the report with its box sets image by image, and the
    report's JSON and PNG under ``out``."""
    from pipeline.train.evaluate import measure_holdouts
    from pipeline.train.gate import Evaluation
    from pipeline.train.report import evaluate_model, write_report

    held_out = measure_holdouts(model, plan.sources, videos=plan.videos, photos=plan.photos)
    report = evaluate_model(model, plan.sources, plan.work, events=plan.events, parking_lot=plan.parking_lot,
                            plates=plan.plates, held_out=held_out, camera_settings=plan.camera_settings)
    json_path, png_path = write_report(report, out)
    _print_report(report)
    return Evaluation(report, held_out), json_path, png_path


def _print_report(report: dict) -> None:
    def shown(value: float | None) -> str:  # None: a set with nothing labelled of the classes it measures
        return "—" if value is None else f"{value:.3f}"

    for name, result in report["holdout"].items():
        classes = ", ".join(f"{c} {v['mAP50']:.3f}" for c, v in result["per_class"].items())
        print(f"eval: {name} ({result['images']} images) mAP50 {shown(result['mAP50'])} "
              f"mAP50-95 {shown(result['mAP50-95'])} — {classes}")
    for name, result in report["events"].items():
        print(f"eval: events {name}: {result['matched']}/{result['episodes']} episodes filed, {result['cases']} cases, "
              f"precision {result['precision']}, recall {result['recall']}, duplicates {result['duplicates']}, "
              f"false positives {result['false_positives']}, frames analysed {result['replay']['frames_analysed']} of "
              f"{result['replay']['frames_sampled']}, network runs {result['replay']['frames_detected']}")
    for name, result in report["plates"].items():
        print(f"eval: plates {name}: {result['exact']}/{result['images']} read exactly through the detector's "
              f"vehicle box (a vehicle over {result['vehicle_found']} plates); the reader alone on the whole "
              f"photo: {result['reader_alone']}/{result['images']}")


def _eval_into_card(model: Path, spec: str, args) -> None:
    from pipeline.detect import load_card
    from pipeline.train.card import save_card, with_eval

    report, _, _ = _evaluate(model, spec, args)
    print(f"eval: figures written into {save_card(with_eval(load_card(model), report), model)}", flush=True)


def _export_checkpoint(weights: Path, out: Path, args, *, name: str):
    from pipeline.train.card import trained_card

    _need_ultralytics()
    from pipeline.train.run import export_onnx

    training_path = Path(args.training) if args.training else _nearest_training(weights)
    if training_path is None:
        raise UsageError(f"no training.json above {weights}: give --training")
    training = json.loads(training_path.read_text(encoding="utf-8"))
    if args.imgsz:
        training["imgsz"] = args.imgsz
    export_onnx(weights, out, training["imgsz"])
    return trained_card(out, training, name=name)


def _int8(fp32: Path, base, out: Path, args):
    from pipeline.train.card import variant_card
    from pipeline.train.precision import sample_frames, to_int8

    videos = [Path(v) for v in args.calibration]
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        raise UsageError(f"--calibration: no such file {', '.join(missing)}")
    frames = sample_frames(videos, args.calibration_frames)
    to_int8(fp32, base, out, frames)
    described = ", ".join(f"{v.name} ({args.calibration_frames} frames)" for v in videos)
    return variant_card(base, out, "int8", calibration=described, name=args.name)


def _nearest_training(weights: Path) -> Path | None:
    # best.pt sits in <work>/runs/<name>/weights/, training.json in <work>/
    nearby = list(weights.resolve().parents)[:4]
    return next((p / "training.json" for p in nearby if (p / "training.json").is_file()), None)


def _training_spec(args, weights: Path) -> str:
    training = Path(args.training) if args.training else _nearest_training(weights)
    if training is not None:
        return json.loads(training.read_text(encoding="utf-8"))["spec"]
    return str(DEFAULT_SPEC)
