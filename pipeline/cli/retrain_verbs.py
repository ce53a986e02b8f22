"""`patrol retrain` (officers' reviewed cases → a fine-tuned candidate, judged against its parent)
and `patrol promote` (an accepted candidate becomes the default, the previous one kept)."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cli.errors import UsageError
from pipeline.cli.model_verbs import CALIBRATION_VIDEOS, DEFAULT_SPEC, EVENT_VIDEOS, REPO

if TYPE_CHECKING:
    from pipeline.cli.model_verbs import EvalPlan
    from pipeline.train.gate import Evaluation
    from pipeline.train.spec import LoadedSpec

DEFAULT_MODEL = REPO / "models" / "patrol-street.onnx"
REFUSED = 3  # exit status of a candidate the gate refuses


def add_retrain_verbs(verbs: argparse._SubParsersAction) -> None:
    """Adds `patrol retrain` and `patrol promote` to the `patrol` parser."""
    retrain = verbs.add_parser(
        "retrain", help="fine-tune the default model on reviewed cases and judge the candidate against it on every "
        "held-out set; exit 3 when it loses a real set beyond noise",
        description="Fine-tunes --parent (its classes kept) on the spec's sources with --reviewed as its `reviewed` "
        "source, measures candidate and parent on the same held-out sets and writes the gate's table beside the "
        "candidate (<out>.gate.json, <out>.gate.md). Exit 0: accepted, its card carries its lineage; exit 3: "
        "refused (a real set lost beyond noise); exit 2: bad input.")
    retrain.add_argument("--reviewed", default="annotations/reviewed",
                         help="a `patrol dataset export` folder (default annotations/reviewed)")
    retrain.add_argument("--parent", default=str(DEFAULT_MODEL),
                         help="the model to fine-tune and beat (default models/patrol-street.onnx); an INT8 or FP16 "
                         "copy is followed to the FP32 model beside it")
    retrain.add_argument("--spec", default=str(DEFAULT_SPEC), help="dataset spec with a `reviewed` source")
    retrain.add_argument("--out", default="var/models/candidate.onnx",
                         help="the candidate ONNX; its card and gate record beside it")
    retrain.add_argument("--work", default="var/retrain",
                         help="mixed dataset, runs, evaluations (the parent's cached by its sha256 and sets)")
    retrain.add_argument("--name", help="the candidate's name in its card (default: the --out file's stem)")
    retrain.add_argument("--epochs", type=int, default=5)
    retrain.add_argument("--hours", type=float, help="wall-time cap; ultralytics fits the epochs to it")
    retrain.add_argument("--imgsz", type=int, help="training size (default: the parent's input size)")
    retrain.add_argument("--freeze", type=int, default=10, help="keep the first N layers as the parent has them "
                         "(default 10: the YOLOv8 backbone)")
    retrain.add_argument("--batch", type=int, default=16)
    retrain.add_argument("--sets", nargs="+", help="held-out sets to judge on (default: every one there is)")
    retrain.add_argument("--events", nargs="*", default=list(EVENT_VIDEOS), choices=EVENT_VIDEOS,
                         help="videos with ground truth to replay (none: --events with no value)")
    retrain.set_defaults(func=cmd_retrain)

    promote = verbs.add_parser(
        "promote", help="make a candidate `patrol retrain` accepted the default model, keeping the one it replaces",
        description="Refused unless the candidate's gate record accepted it against the very file now at --to. "
        "The replaced model and its card are kept as <stem>.previous.onnx / .card.yaml (rollback: copy them back); "
        "a line goes to LINEAGE.jsonl beside --to.")
    promote.add_argument("candidate", help="a candidate ONNX with its card and gate record beside it")
    promote.add_argument("--to", default=str(DEFAULT_MODEL), help="the default model to replace "
                         "(default models/patrol-street.onnx)")
    promote.add_argument("--int8", action="store_true",
                         help="also make the INT8 runtime copy <stem>-int8.onnx beside --to (as `patrol export "
                         "--int8` does)")
    promote.add_argument("--calibration", nargs="+", default=[str(v) for v in CALIBRATION_VIDEOS],
                         help="videos whose frames calibrate --int8 (default: ../shared car-detection + sample street)")
    promote.add_argument("--calibration-frames", type=int, default=32, help="frames taken from each calibration video")
    promote.set_defaults(func=cmd_promote, name=None)  # name: the INT8 copy's, as `patrol export` names it


def cmd_retrain(args) -> int:
    from pipeline.cli.model_verbs import TrainPlan, eval_plan, evaluate_planned, train_model
    from pipeline.detect import load_card
    from pipeline.train.card import save_card, with_eval
    from pipeline.train.gate import judge
    from pipeline.train.lineage import candidate_lineage, fp32_model, read_reviewed, write_gate
    from pipeline.train.spec import load_spec

    parent, out, work = Path(args.parent), Path(args.out), Path(args.work)
    if not parent.is_file():
        raise UsageError(f"--parent {parent}: no such file")
    try:
        parent = fp32_model(parent)
    except ValueError as exc:
        raise UsageError(f"--parent {exc}") from None
    try:
        reviewed = read_reviewed(Path(args.reviewed))
    except ValueError as exc:
        raise UsageError(f"--reviewed {exc}") from None
    if out.resolve() == parent.resolve():
        raise UsageError(f"--out {out}: is the parent itself; the candidate needs a file of its own")
    parent_card = load_card(parent)
    loaded = _with_reviewed(load_spec(args.spec), reviewed.folder)
    print(f"retrain: from {parent} ({parent_card.name}, sha256 {parent_card.sha256[:12]}…); {reviewed.line()}",
          flush=True)
    plan = eval_plan(loaded, work=work / "eval-work", sets=args.sets, events=args.events)
    before = _parent_evaluation(parent, plan, work / "parent-eval")
    training = train_model(loaded, TrainPlan(
        out=out, work=work / "train", init=parent, keep_classes=True, epochs=args.epochs,
        imgsz=args.imgsz or parent_card.input.width, batch=args.batch, hours=args.hours, freeze=args.freeze,
        name=args.name))
    after, _, _ = evaluate_planned(out, plan, work / "eval")
    synthetic = frozenset(name for name, spec in loaded.spec.sources.items() if spec.render is not None)
    gate = judge(before, after, synthetic_sets=synthetic)
    gate_json, gate_md = write_gate(gate, out)
    print(gate.table(), flush=True)
    if not gate.accepted:
        print(f"patrol retrain: {gate.line()} (the table: {gate_md})", file=sys.stderr)
        return REFUSED
    card = with_eval(load_card(out), after.report)
    lineage = candidate_lineage(parent, parent_card, reviewed, training, gate, gate_json)
    card = card.model_copy(update={
        "data": f"{card.data} Reviewed cases: {reviewed.positives} confirmed (positives), {reviewed.hard_negatives} "
                f"rejected as 误检 (hard negatives), manifest sha256 {reviewed.manifest_sha256[:12]}….",
        "metrics": {**card.metrics, "lineage": lineage}})
    print(f"retrain: {gate.line()}; {out}, card {save_card(card, out)}, gate {gate_md}. Next: `patrol shadow` "
          f"beside the default, then `patrol promote {out}`", flush=True)
    return 0


def _with_reviewed(loaded: LoadedSpec, folder: Path) -> LoadedSpec:
    """``loaded`` with its `reviewed` source read from ``folder`` (and required)."""
    from pipeline.train.spec import LoadedSpec

    sources = loaded.spec.sources
    if "reviewed" not in sources:
        raise UsageError(f"--spec {loaded.path}: has no `reviewed` source for the export to train as "
                         "(annotations/datasets/street.yaml has one)")
    reviewed = sources["reviewed"].model_copy(update={"path": folder.resolve(), "optional": False})
    return LoadedSpec(loaded.path, loaded.spec.model_copy(update={"sources": {**sources, "reviewed": reviewed}}))


def _parent_evaluation(parent: Path, plan: EvalPlan, cache: Path) -> Evaluation:
    """The parent measured on ``plan``'s sets, from ``cache`` when these very weights were measured
    on these very images and labels before (the event replays take minutes)."""
    from pipeline.cli.model_verbs import evaluate_planned
    from pipeline.train.evaluate import load_measured, save_measured
    from pipeline.train.gate import Evaluation

    folder = cache / _evaluation_key(parent, plan)
    measured = folder / "held-out.npz"
    if measured.is_file():
        print(f"retrain: the parent's figures from {folder} (same weights, same held-out sets)", flush=True)
        report = json.loads(next(folder.glob("eval-*.json")).read_text(encoding="utf-8"))
        return Evaluation(report, load_measured(measured))
    evaluation, _, _ = evaluate_planned(parent, plan, folder)
    save_measured(evaluation.held_out, measured)  # last: its presence says the folder is whole
    return evaluation


def _evaluation_key(model: Path, plan: EvalPlan) -> str:
    from pipeline.detect.card import sha256_file

    def labels_of(source) -> list[tuple[str, str]]:
        return [(image.name, "\n".join(source.label_lines(image))) for image in source.holdout_images()]

    measured = {
        "model": sha256_file(model),
        "sources": {name: labels_of(source) for name, source in plan.sources.items()},
        "videos": {name: [video.name, sha256_file(labels)] for name, (video, labels) in plan.videos.items()},
        "photos": {name: sha256_file(labels) for name, labels in plan.photos.items()},
        "plates": sorted(plan.plates),
        "events": list(plan.events),
    }
    return hashlib.sha256(json.dumps(measured, sort_keys=True).encode()).hexdigest()[:16]


def cmd_promote(args) -> int:
    from pipeline.cli.model_verbs import _need_onnx
    from pipeline.detect import load_card
    from pipeline.train.lineage import promote

    candidate, target = Path(args.candidate), Path(args.to)
    if not candidate.is_file():
        raise UsageError(f"{candidate}: no such file")
    if args.int8:
        _need_onnx()
    try:
        promotion = promote(candidate, target)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"promote: {candidate} is now {target} (sha256 {promotion.entry['sha256'][:12]}…); the model it replaced "
          f"is kept as {promotion.previous}; {target.parent / 'LINEAGE.jsonl'}", flush=True)
    int8 = target.with_name(f"{target.stem}-int8{target.suffix}")
    if args.int8:
        _remake_int8(target, int8, promotion.entry, args)
    elif int8.is_file() and load_card(int8).metrics.get("derived_from", {}).get("sha256") != promotion.entry["sha256"]:
        print(f"promote: {int8} is still the INT8 copy of an earlier model; --int8 makes it anew from {target}",
              file=sys.stderr)
    return 0


def _remake_int8(fp32: Path, int8: Path, promoted: dict, args) -> None:
    """The INT8 runtime copy of the promoted ``fp32`` at ``int8``, the copy it replaces kept as its previous."""
    from pipeline.cli.model_verbs import _int8
    from pipeline.detect import load_card
    from pipeline.train.card import save_card
    from pipeline.train.lineage import append_lineage, replace_keeping_previous

    with tempfile.TemporaryDirectory() as scratch:
        made = Path(scratch) / int8.name
        card = _int8(fp32, load_card(fp32), made, args)
        previous = replace_keeping_previous(made, int8)
    save_card(card, int8)
    append_lineage(int8.parent, {"promoted_at": promoted["promoted_at"], "candidate": promoted["candidate"],
                                 "file": int8.name, "name": card.name, "sha256": card.sha256,
                                 "derived_from": card.metrics["derived_from"]["sha256"],
                                 "previous": previous.name if previous else None})
    print(f"promote: INT8 copy {int8}" + (f" (the one it replaced kept as {previous})" if previous else ""))
