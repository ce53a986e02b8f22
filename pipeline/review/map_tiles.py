"""An operator's tile server for the map page (``PATROL_MAP_TILES``): the URL template, checked, and
the one origin the page's Content-Security-Policy then allows pictures from.

By default the map draws no tiles and loads nothing from outside; a district with its own tile
server (or an internet connection and a provider's terms) names one, e.g.
``https://tiles.example.org/{z}/{x}/{y}.png`` in Web Mercator (EPSG:3857) tiles of 256 pixels.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

PLACES = ("{z}", "{x}", "{y}")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")  # no user:password@, no placeholder in the origin
_UNSAFE = re.compile(r"[\s\"'<>\\;,`]")


def check_tile_template(template: str) -> str:
    """The template as given; ValueError unless it is an http(s) URL with {z}, {x} and {y} after its origin."""
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https") or not _HOST.match(parts.netloc):
        raise ValueError(f"a tile URL template is http(s)://host[:port]/…, got {template!r}")
    if _UNSAFE.search(template) or len(template) > 500:
        raise ValueError(f"a tile URL template has no spaces, quotes, ';' or ',' and at most 500 characters: "
                         f"{template!r}")
    rest = template[len(f"{parts.scheme}://{parts.netloc}"):]
    missing = [place for place in PLACES if place not in rest]
    if missing:
        raise ValueError(f"a tile URL template needs {', '.join(missing)} in its path, e.g. "
                         f"https://tiles.example.org/{{z}}/{{x}}/{{y}}.png; got {template!r}")
    return template


def tile_origin(template: str) -> str:
    """scheme://host[:port] of a checked template: what the CSP's img-src adds."""
    parts = urlsplit(template)
    return f"{parts.scheme}://{parts.netloc}"
