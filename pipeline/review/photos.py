"""Field photos of a disposal (处置照片) as uploaded: JPEG or PNG by their bytes, whole, and not too big.

The kind is read from the file's first bytes and the picture is then decoded in full: a renamed
file, a picture cut short or with its data changed after the header, is refused before any of the
upload is stored.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image

from pipeline.review.errors import TooLarge, UnsupportedMedia

MAX_PHOTO_BYTES = 5 * 1024 * 1024  # a phone picture at full size
MAX_PHOTOS = 4  # per report of disposal
MAX_PIXELS = 50_000_000  # decoding more would take memory no field photo needs
_SHOWN_NAME_CHARS = 64


@dataclass(frozen=True, slots=True)
class PhotoKind:
    magic: bytes
    content_type: str
    extension: str
    pil_format: str


KINDS = (PhotoKind(b"\xff\xd8\xff", "image/jpeg", "jpg", "JPEG"),
         PhotoKind(b"\x89PNG\r\n\x1a\n", "image/png", "png", "PNG"))


@dataclass(frozen=True, slots=True)
class CheckedPhoto:
    data: bytes
    kind: PhotoKind

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def check_photo(filename: str, data: bytes) -> CheckedPhoto:
    """TooLarge over MAX_PHOTO_BYTES; UnsupportedMedia for anything but a whole JPEG or PNG picture."""
    shown = filename[:_SHOWN_NAME_CHARS] or "（无文件名）"
    if len(data) > MAX_PHOTO_BYTES:
        raise TooLarge(f"照片 {shown} 超过 {MAX_PHOTO_BYTES // (1024 * 1024)} MB，请压缩后重新上传")
    kind = next((kind for kind in KINDS if data.startswith(kind.magic)), None)
    if kind is None:
        raise UnsupportedMedia(f"照片 {shown} 不是 JPEG 或 PNG 图片（按文件内容判断，与扩展名无关），未保存")
    try:
        with Image.open(io.BytesIO(data), formats=[kind.pil_format]) as picture:
            if picture.width * picture.height > MAX_PIXELS:
                raise UnsupportedMedia(f"照片 {shown} 像素过多（{picture.width}×{picture.height}），未保存")
            picture.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UnsupportedMedia(f"照片 {shown} 已损坏或不完整，无法读取（{exc}），未保存") from None
    return CheckedPhoto(data, kind)
