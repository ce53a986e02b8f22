"""案卷: one case as a printable PDF, for the file folder and for whoever the case goes to outside.

It holds the photos the case has, where and when, what was seen (violation, event code, plate,
dwell), who decided it (name and 执法证号 where the account has them), an excerpt of the case's
audit trail and every evidence file's sha256 as filed with the case, each marked whether the file
still matches it; a case filed (立案) has a section 处置经过 besides, how it was handled after
confirmation (dossier_loop.py). Text is Chinese, so a CJK font is embedded (fpdf2 subsets it);
without one the service refuses the export rather than print a page of empty boxes.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fpdf import FPDF
from fpdf.errors import FPDFException
from fpdf.fonts import FontFace

from pipeline.evidence import find_cjk_font
from pipeline.review.accounts import User
from pipeline.review.audit import AuditEntry
from pipeline.review.cases import ReviewCase
from pipeline.review.evidence_check import StoredEvidence
from pipeline.review.local_time import show_local
from pipeline.review.plates import read_colour
from pipeline.review.signed_heads import SignedHead
from pipeline.review.vocabulary import (
    ACTION_LABELS,
    PLATE_COLOUR_LABELS,
    REJECT_REASON_LABELS,
    STATUS_LABELS,
    Decision,
    clip_coverage,
    violation_label,
)

if TYPE_CHECKING:
    from pipeline.review.dossier_loop import LoopHistory

CJK_FONT_PACKAGE = "fonts-wqy-microhei"
# Looked for first: TrueType fonts with Latin and CJK glyphs (Debian's paths), so the dossier looks
# the same wherever the package is installed; else whatever fontconfig lists for Chinese and English.
KNOWN_CJK_FONTS = (Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
                   Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"))
NO_FONT_MESSAGE = (f"服务器未安装中文字体，无法生成案卷 PDF：请安装 {CJK_FONT_PACKAGE}"
                   f"（apt-get install {CJK_FONT_PACKAGE}）后重试")
PHOTOS = (("annotated.jpg", "标注快照"), ("last_frame.jpg", "故障前最后画面"), ("first_seen.jpg", "首次发现"),
          ("crop.jpg", "目标特写"), ("plate.jpg", "车牌"))
HIDDEN_FROM_EXCERPT = frozenset({"evidence_view"})  # each look at a file: many, and in the bundle's audit.jsonl
_DECISIONS = frozenset(decision.value for decision in Decision)
_FONT = "cjk"
_HEADINGS = FontFace(emphasis="", fill_color=(232, 237, 242))  # the CJK font comes in one weight: no bold
_PAGE_WIDTH_MM = 180.0  # A4 less 15 mm margins
_MAIN_PHOTO_MM = (180.0, 100.0)
_SMALL_PHOTO_MM = (56.0, 42.0)
_SECTION_NUMBERS = "一二三四五六七八"


def find_dossier_font() -> Path | None:
    """A CJK font for the dossier, or None when the machine has none."""
    return next((path for path in KNOWN_CJK_FONTS if path.is_file()), None) or find_cjk_font()


@dataclass(frozen=True, slots=True)
class Officer:
    """A person the dossier names (who decided, who exported): the login name, and the 姓名 and 执法证号
    where the account has them."""

    name: str
    display_name: str | None = None
    badge_number: str | None = None

    @classmethod
    def of(cls, user: User) -> Officer:
        return cls(user.name, user.display_name, user.badge_number)

    def describe(self) -> str:
        shown = self.display_name or self.name
        return shown + (f"（执法证号 {self.badge_number}）" if self.badge_number else "")


def deciding_officer(case: ReviewCase, audit: Iterable[AuditEntry], accounts: Iterable[User]) -> Officer | None:
    """Who decided the case, as the decision's audit entry named them (the account may have changed
    since); for a decision recorded before entries named anyone, as the account names them now."""
    if case.decided_by is None:
        return None
    decisions = [entry for entry in audit if entry.action in _DECISIONS and entry.actor == case.decided_by]
    return recorded_officer(case.decided_by, decisions[-1].detail if decisions else {}, accounts)


def recorded_officer(actor: str, detail: dict[str, Any], accounts: Iterable[User]) -> Officer:
    """Who took a step, as its audit entry's detail named them; for an entry from before entries named
    anyone, as the account names them now."""
    if "display_name" in detail or "badge_number" in detail:
        return Officer(actor, detail.get("display_name"), detail.get("badge_number"))
    account = next((user for user in accounts if user.name == actor), None)
    return Officer.of(account) if account else Officer(actor)


@dataclass(frozen=True, slots=True)
class DossierExport:
    """The export itself: who asked, when (ISO 8601), and the clock the dossier's times are shown on."""

    exported_by: Officer
    exported_at: str
    zone: tzinfo
    signed_head: SignedHead | None = None  # the audit chain's head at this export (its own entry), signed
    public_key_pem: str = ""  # the key that checks the signature



class DossierPdf(FPDF):
    def __init__(self, font_path: Path, footer_text: str) -> None:
        super().__init__(format="A4")
        self._footer_text = footer_text
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(True, margin=18)
        self.add_font(_FONT, fname=str(font_path))
        self.set_font(_FONT, size=10)

    def footer(self) -> None:
        self.set_y(-13)
        self.set_font(_FONT, size=7)
        self.cell(0, 5, f"{self._footer_text} · 第 {self.page_no()} 页 / 共 {{nb}} 页", align="C")

    def heading(self, text: str) -> None:
        self.ln(3)
        self.set_font(_FONT, size=12)
        self.cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
        self.set_font(_FONT, size=9)

    def pairs(self, rows: Iterable[tuple[str, str]]) -> None:
        with self.table(col_widths=(30, 150), first_row_as_headings=False, line_height=5.5) as table:
            for label, value in rows:
                table.row([label, value])

    def grid(self, headings: tuple[str, ...], widths: tuple[float, ...], rows: Iterable[tuple[str, ...]]) -> None:
        with self.table(col_widths=widths, line_height=5, headings_style=_HEADINGS) as table:
            table.row(list(headings))
            for row in rows:
                table.row(list(row))

    def photo_row(self, photos: list[tuple[StoredEvidence, str]]) -> None:
        """Small pictures with their captions, as many to a row as fit."""
        per_row = int(_PAGE_WIDTH_MM // _SMALL_PHOTO_MM[0])
        width, height = _SMALL_PHOTO_MM
        for start in range(0, len(photos), per_row):
            if self.will_page_break(height + 6):
                self.add_page()
            top, left = self.get_y(), self.l_margin
            for column, (file, caption) in enumerate(photos[start:start + per_row]):
                self.set_xy(left + column * (width + 6), top)
                self.photo(file, caption, width, height)
            self.set_xy(left, top + height + 6)

    def photo(self, file: StoredEvidence, caption: str, width: float, height: float) -> None:
        """The picture fitted in a width x height box at the cursor, its caption below; the cursor ends under it."""
        if self.will_page_break(height + 6):
            self.add_page()
        left, top = self.get_x(), self.get_y()
        note = "" if file.intact else ("（文件缺失）" if file.data is None else "（校验失败：与案件记录的 sha256 不符）")
        if file.data is not None:
            try:
                self.image(io.BytesIO(file.data), x=left, y=top, w=width, h=height, keep_aspect_ratio=True)
            except (FPDFException, OSError, ValueError):  # bytes that are no picture (a replaced file)
                note += "（无法显示）"
        self.set_xy(left, top + height)
        self.set_font(_FONT, size=8)
        self.cell(width, 5, f"{caption} {file.name}{note}", align="C")
        self.set_font(_FONT, size=9)
        self.set_xy(self.l_margin, top + height + 6)


def build_dossier(case: ReviewCase, evidence: list[StoredEvidence], audit: list[AuditEntry], *,
                  decided_by: Officer | None, export: DossierExport, font_path: Path,
                  loop: LoopHistory | None = None) -> bytes:
    """``loop``: the case's 处置流程 (dossier_loop.py), printed as 处置经过 after the decision; None before 立案."""
    record = case.record
    numbers = iter(_SECTION_NUMBERS)
    pdf = DossierPdf(font_path, f"案件 {record.case_id} · 案件记录 sha256 {case.record_sha256}")
    pdf.add_page()
    pdf.set_font(_FONT, size=16)
    pdf.cell(0, 10, "城市管理违法案件案卷", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(_FONT, size=9)
    pdf.cell(0, 6, f"案件编号 {record.case_id} · 导出人 {export.exported_by.describe()} · "
                   f"导出时间 {show_local(export.exported_at, export.zone)}", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.heading(f"{next(numbers)}、案件信息")
    pdf.pairs(_case_facts(case, export.zone))
    pdf.heading(f"{next(numbers)}、审核结论")
    pdf.pairs(_decision(case, decided_by, export.zone))
    if loop is not None:
        pdf.heading(f"{next(numbers)}、处置经过")
        loop.print_to(pdf, export.zone)
    pdf.heading(f"{next(numbers)}、证据照片")
    _photos(pdf, evidence)
    pdf.heading(f"{next(numbers)}、证据文件及 sha256 校验")
    pdf.grid(("文件", "案件记录中的 sha256", "校验"), (28, 132, 20),
             ((file.name, file.recorded_sha256, check_label(file)) for file in evidence))
    pdf.heading(f"{next(numbers)}、审计记录摘录（不含证据查看记录）")
    pdf.grid(("序号", "时间", "操作人", "操作", "记录 sha256（前 16 位）"), (14, 36, 36, 50, 44),
             ((str(entry.seq), show_local(entry.at, export.zone), entry.actor, _action(entry), entry.sha256[:16])
              for entry in audit if entry.action not in HIDDEN_FROM_EXCERPT))
    if export.signed_head is not None:
        pdf.heading(f"{next(numbers)}、电子签章（审计链签名）")
        pdf.pairs(_seal(export))
    return bytes(pdf.output())


def _seal(export: DossierExport) -> list[tuple[str, str]]:
    """The signed head a third party checks this dossier's audit chain against, and how."""
    head = export.signed_head
    fingerprint = hashlib.sha256(export.public_key_pem.encode()).hexdigest()
    return [("审计链头", f"第 {head.seq} 条 · {show_local(head.at, export.zone)}"),
            ("链头 sha256", head.sha256),
            ("Ed25519 签名", head.signature),
            ("公钥指纹", f"sha256 {fingerprint}（公钥随证据包 audit-public-key.pem 导出）"),
            ("核验方法", f"patrol verify --expect-head {head.seq}:{head.sha256}，"
                        "并以公钥核对签名（签名内容见证据包 signed_head.json）")]


def _case_facts(case: ReviewCase, zone: tzinfo) -> list[tuple[str, str]]:
    record = case.record
    location = record.location
    lat, lon = location.get("lat"), location.get("lon")
    facts = [
        ("违规类型", f"{violation_label(record.violation)}（{record.violation}）"),
        ("事件", f"{record.event_name}（事件编码 {record.event_code}）"),
        ("首次发现", show_local(record.first_seen_wall, zone)),
        ("确认时间", show_local(record.confirmed_wall, zone)),
        ("持续时间", f"{record.dwell_s:.0f} 秒"),
        ("车牌", _plate(case, zone)),
        ("摄像头", f"{record.camera_name}（{record.camera_id}）"),
        ("地址", location.get("address") or "—"),
        ("网格编码", location.get("grid_code") or "—"),
        ("坐标", f"{lat:.6f}, {lon:.6f}（WGS-84）" if lat is not None and lon is not None else "—"),
        ("管控区", record.zone_id or "—"),
        ("检测置信度", f"{record.score:.2f}"),
    ]
    if "clip.mp4" in record.evidence:
        facts.append(("视频片段", f"clip.mp4：{clip_coverage(record.first_seen_wall, record.confirmed_wall)}"))
    return facts


def _plate(case: ReviewCase, zone: tzinfo) -> str:
    """The machine's read; under an officer's correction, the plate in force first, who corrected it and when."""
    plate = case.plate
    if plate is None:
        return "—"
    read = plate.read if plate.read and plate.read.get("text") else None
    read_text = "未识别"
    if read:
        colour = PLATE_COLOUR_LABELS[read_colour(read)]
        read_text = f"{read['text']}（{colour}，识别置信度 {read.get('confidence') or 0:.2f}）"
    correction = plate.correction
    if correction is None:
        return read_text
    reason = f"，原因：{correction.reason}" if correction.reason else ""
    return (f"{plate.text}（{plate.colour_label}）；人工更正：{correction.by_name} 于 {show_local(correction.at, zone)}"
            f"{reason}；识别结果：{read_text}")


def _decision(case: ReviewCase, decided_by: Officer | None, zone: tzinfo) -> list[tuple[str, str]]:
    rows = [("状态", STATUS_LABELS[case.status])]
    if decided_by is None:
        return rows + [("处理人", "尚未处理")]
    rows += [("处理人", decided_by.describe()), ("处理时间", show_local(case.decided_at, zone))]
    if case.reject_reason:
        rows.append(("驳回原因", REJECT_REASON_LABELS[case.reject_reason]))
    if case.duplicate_of:
        rows.append(("重复于", case.duplicate_of))
    if case.decision_note:
        rows.append(("说明", case.decision_note))
    return rows


def _photos(pdf: DossierPdf, evidence: list[StoredEvidence]) -> None:
    by_name = {file.name: file for file in evidence}
    shown = [(by_name[name], caption) for name, caption in PHOTOS if name in by_name]
    if not shown:
        pdf.cell(0, 6, "此案件没有图片证据。", new_x="LMARGIN", new_y="NEXT")
        return
    main, *small = shown
    pdf.photo(*main, *_MAIN_PHOTO_MM)
    pdf.photo_row(small)


def check_label(file: StoredEvidence) -> str:
    """Whether the file still matches the sha256 on record, in a word."""
    if file.data is None:
        return "文件缺失"
    return "一致" if file.intact else "不符"


def _action(entry: AuditEntry) -> str:
    """The action in Chinese, with the status change it made, if any."""
    label = ACTION_LABELS.get(entry.action, entry.action)
    before, after = (entry.before or {}).get("status"), (entry.after or {}).get("status")
    if after is None or before == after:
        return label
    change = STATUS_LABELS.get(after, after)
    if before is not None:
        change = f"{STATUS_LABELS.get(before, before)} → {change}"
    return f"{label}（{change}）"
