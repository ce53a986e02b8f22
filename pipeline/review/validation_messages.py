"""Validation errors in the officers' language: each error's ``msg`` in Chinese, naming its field,
its ``type`` and ``loc`` unchanged, so a 422 keeps FastAPI's documented shape for clients while the
page shows words an officer reads. A dozen pydantic error types cover what forms and the API can
send; others keep pydantic's English text after the field's name. (pydantic has no Chinese
messages of its own; pydantic-i18n would add a dependency for this one table.)"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_MESSAGES = {
    "missing": "必须填写",
    "string_too_short": "太短：至少 {min_length} 个字符",
    "string_too_long": "太长：至多 {max_length} 个字符",
    "string_type": "应为文字",
    "string_pattern_mismatch": "格式不对",
    "int_parsing": "应为整数",
    "int_type": "应为整数",
    "int_from_float": "应为整数",
    "float_parsing": "应为数字",
    "float_type": "应为数字",
    "finite_number": "应为有限的数字",
    "bool_parsing": "应为 true 或 false",
    "bool_type": "应为 true 或 false",
    "greater_than": "应大于 {gt}",
    "greater_than_equal": "应不小于 {ge}",
    "less_than": "应小于 {lt}",
    "less_than_equal": "应不大于 {le}",
    "enum": "应为以下之一：{expected}",
    "literal_error": "应为以下之一：{expected}",
    "datetime_parsing": "应为 ISO 8601 时间，如 2026-03-02T08:00:00+08:00",
    "datetime_from_date_parsing": "应为 ISO 8601 时间，如 2026-03-02T08:00:00+08:00",
    "datetime_type": "应为 ISO 8601 时间，如 2026-03-02T08:00:00+08:00",
    "json_invalid": "不是有效的 JSON",
    "dict_type": "应为对象",
    "model_attributes_type": "应为对象",
    "list_type": "应为列表",
    "too_short": "至少 {min_length} 项",
    "too_long": "至多 {max_length} 项",
    "extra_forbidden": "不认识的字段",
}
_PLACES = {"body": "请求内容", "query": "查询参数", "path": "路径", "header": "请求头", "cookie": "Cookie"}


def field_name(loc: Iterable[Any]) -> str:
    """``('body', 'deadline')`` → ``deadline``; the place alone when the whole of it is wrong."""
    parts = [str(part) for part in loc]
    named = [part for part in parts[1:] if part]
    return ".".join(named) if named else _PLACES.get(parts[0], parts[0]) if parts else "请求"


def in_chinese(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``errors`` (``RequestValidationError.errors()``) with each ``msg`` in Chinese."""
    translated = []
    for error in errors:
        context = {key: _listed(value) for key, value in (error.get("ctx") or {}).items()}
        template = _MESSAGES.get(error.get("type", ""))
        try:
            said = template.format(**context) if template else str(error.get("msg", ""))
        except (KeyError, IndexError):  # a context this table did not expect: its text without the numbers
            said = template.split("：")[0].split("{")[0].strip()
        translated.append({**error, "msg": f"{field_name(error.get('loc', ()))}：{said}"})
    return translated


def _listed(value: Any) -> Any:
    """pydantic's "'a', 'b' or 'c'" (or "<Kind.A: 'a'> or <Kind.B: 'b'>", an enum's members) as a、b、c."""
    if not isinstance(value, str):
        return value
    members = re.findall(r"<[^<>:]+: '([^']*)'>", value)
    return "、".join(members or (part.strip(" '\"") for part in value.replace(" or ", ",").split(",")))
