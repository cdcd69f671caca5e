"""JSON responses encoded by orjson.

Starlette's JSONResponse calls ``json.dumps`` with keyword arguments, which builds a new encoder
for every response; orjson encodes the same compact UTF-8 (``ensure_ascii=False``, no spaces) in
a fraction of the time. A NaN or infinity, which json.dumps(allow_nan=False) refused with an
exception, is written as null.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse as _StarletteJSONResponse


class JSONResponse(_StarletteJSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
