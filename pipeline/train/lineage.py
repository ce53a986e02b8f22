"""Where a retrained model comes from, and how it becomes the default (`patrol retrain`, `patrol promote`).

A candidate carries its gate record beside it (``<stem>.gate.json`` and ``.gate.md``); its card's
``metrics.lineage`` names its parent by sha256, the reviewed export it learnt from, its training
images and the gate's figures. Promotion copies an accepted candidate over the default only while
the default is still the very parent it was judged against, keeps the default it replaces as
``<stem>.previous.onnx`` with its card (a rollback is one copy back), and appends a line to
``LINEAGE.jsonl`` beside the models.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipeline.detect.card import CARD_SUFFIX, ModelCard, ModelCardError, load_card, read_card, sha256_file
from pipeline.train.card import card_path, save_card
from pipeline.train.gate import GateResult

GATE_SUFFIX = ".gate"
LINEAGE_FILE = "LINEAGE.jsonl"
PREVIOUS_SUFFIX = ".previous"


@dataclass(frozen=True)
class ReviewedExport:
    """A `patrol dataset export` folder: its crops, and the manifest that says which case each is."""

    folder: Path
    positives: int
    hard_negatives: int
    manifest_sha256: str

    def line(self) -> str:
        return f"reviewed: {self.positives} positives, {self.hard_negatives} hard negatives from {self.folder}"

    def record(self) -> dict:
        return {**asdict(self), "folder": str(self.folder)}


def read_reviewed(folder: Path) -> ReviewedExport:
    """ValueError, naming the folder, when it holds no exported image or no manifest."""
    images = sorted((folder / "images").glob("*.jpg")) if (folder / "images").is_dir() else []
    if not images:
        raise ValueError(f"{folder}: no images in {folder / 'images'}: export the reviewed cases first "
                         f"(patrol dataset export --since DATE --out {folder})")
    manifest = folder / "manifest.jsonl"
    if not manifest.is_file():
        raise ValueError(f"{folder}: no manifest.jsonl: not a folder `patrol dataset export` wrote")
    present = {image.stem for image in images}
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    kinds = Counter(row["kind"] for row in rows if row["case_id"] in present)
    return ReviewedExport(folder, kinds["positive"], kinds["hard_negative"], sha256_file(manifest))


def fp32_model(model: Path) -> Path:
    """``model`` when its weights are FP32; for an FP16 or INT8 copy, the FP32 model its card says
    it derives from, found beside it by sha256. ValueError when that is not there."""
    card = load_card(model)
    precision = card.metrics.get("precision", "fp32")
    if precision == "fp32":
        return model
    parent = card.metrics.get("derived_from") or {}
    for other in sorted(model.parent.glob("*.onnx")):
        sibling = card_path(other)
        if other != model and sibling.is_file() and read_card(sibling).sha256 == parent.get("sha256"):
            try:
                load_card(other)  # the file still has the weights its card names
            except ModelCardError:
                continue
            return other
    raise ValueError(f"{model}: is the {precision} copy of {parent.get('name', 'an unnamed model')} "
                     f"(sha256 {str(parent.get('sha256'))[:12]}…), whose FP32 file is not beside it; "
                     "fine-tuning starts from FP32 weights: give that file")


def candidate_lineage(parent: Path, parent_card: ModelCard, reviewed: ReviewedExport, training: dict,
                      gate: GateResult, gate_json: Path) -> dict:
    """The card's ``metrics.lineage`` of a candidate the gate accepted."""
    return {
        "parent": {"name": parent_card.name, "file": str(parent), "sha256": parent_card.sha256},
        "reviewed": reviewed.record(),
        "train_images": training["train_images"],
        "epochs": training["epochs"], "imgsz": training["imgsz"], "freeze": training["freeze"],
        "gate": {"record": gate_json.name, "accepted": gate.accepted,
                 "sets": {s.name: {"parent": s.parent, "candidate": s.candidate, "verdict": s.verdict.value}
                          for s in gate.sets}},
    }


def gate_paths(candidate: Path) -> tuple[Path, Path]:
    """The gate record beside ``candidate``: JSON (what promotion reads) and the markdown table."""
    return (candidate.with_name(f"{candidate.stem}{GATE_SUFFIX}.json"),
            candidate.with_name(f"{candidate.stem}{GATE_SUFFIX}.md"))


def write_gate(gate: GateResult, candidate: Path) -> tuple[Path, Path]:
    json_path, markdown_path = gate_paths(candidate)
    record = {**gate.to_dict(), "candidate_file": str(candidate), "judged_at": _now()}
    json_path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    markdown_path.write_text(gate.table(), encoding="utf-8")
    return json_path, markdown_path


@dataclass(frozen=True)
class Promotion:
    target: Path
    previous: Path | None  # the default it replaced, kept for a rollback
    entry: dict  # its LINEAGE.jsonl line


def check_promotable(candidate: Path, target: Path) -> GateResult:
    """The gate record that lets ``candidate`` replace ``target``; ValueError saying why not."""
    json_path, markdown_path = gate_paths(candidate)
    if not json_path.is_file():
        raise ValueError(f"{candidate}: no gate record ({json_path.name}) beside it: only a candidate that "
                         "`patrol retrain` judged and accepted is promoted")
    gate = GateResult.from_dict(json.loads(json_path.read_text(encoding="utf-8")))
    if not gate.accepted:
        raise ValueError(f"{candidate}: the gate refused it ({gate.line()}; the table: {markdown_path})")
    if sha256_file(candidate) != gate.candidate["sha256"]:
        raise ValueError(f"{candidate}: its weights are not those the gate judged ({json_path.name} names sha256 "
                         f"{gate.candidate['sha256'][:12]}…)")
    parent = gate.parent
    if not target.is_file():
        raise ValueError(f"--to {target}: no such file; the candidate was judged against {parent['name']} "
                         f"(sha256 {parent['sha256'][:12]}…)")
    current = sha256_file(target)
    if current != parent["sha256"]:
        raise ValueError(f"--to {target}: is sha256 {current[:12]}…, but {candidate.name} was judged against "
                         f"{parent['name']} (sha256 {parent['sha256'][:12]}…): the default changed since; retrain "
                         "against the current one")
    return gate


def promote(candidate: Path, target: Path) -> Promotion:
    """``candidate`` (with a card naming it after ``target``) in ``target``'s place, the replaced
    default kept beside it; ValueError when the gate record does not allow it."""
    gate = check_promotable(candidate, target)
    card = load_card(candidate)
    promoted_at = _now()
    previous = replace_keeping_previous(candidate, target)
    lineage = {**card.metrics.get("lineage", {}), "promoted_at": promoted_at, "promoted_from": str(candidate),
               "previous": {"file": previous.name, "sha256": gate.parent["sha256"]}}
    save_card(card.model_copy(update={"name": target.stem, "metrics": {**card.metrics, "lineage": lineage}}), target)
    entry = {"promoted_at": promoted_at, "file": target.name, "name": target.stem, "sha256": card.sha256,
             "parent_sha256": gate.parent["sha256"], "previous": previous.name, "candidate": str(candidate),
             "reviewed": lineage.get("reviewed"), "gate": gate_paths(candidate)[0].name}
    append_lineage(target.parent, entry)
    return Promotion(target, previous, entry)


def replace_keeping_previous(new: Path, target: Path) -> Path | None:
    """Copies ``new`` over ``target`` after keeping ``target`` and its card as ``<stem>.previous``
    (returned; None when there was no ``target``). The copy lands whole or not at all."""
    previous = None
    if target.is_file():
        previous = target.with_name(target.stem + PREVIOUS_SUFFIX + target.suffix)
        shutil.copyfile(target, previous)
        if card_path(target).is_file():
            shutil.copyfile(card_path(target), previous.with_name(previous.stem + CARD_SUFFIX))
    landing = target.with_name(f".{target.name}.promoting")
    shutil.copyfile(new, landing)
    os.replace(landing, target)
    return previous


def append_lineage(folder: Path, entry: dict) -> Path:
    path = folder / LINEAGE_FILE
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
    return path


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
