"""The app the listener subprocess tests serve: it says how it was reached."""

from __future__ import annotations

import json
import os
from typing import Any


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = json.dumps(
        {
            "scheme": scope["scheme"],
            "server": scope["server"],
            "tls": "tls" in scope.get("extensions", {}),
            "systemd_variables": sorted(k for k in os.environ if k.startswith("LISTEN_")),
        }
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
