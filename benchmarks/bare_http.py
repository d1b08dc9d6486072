"""The ceiling of the HTTP benchmark: a bare aiohttp handler on the N5g-eir path, on uvloop.

It reads ``pei`` like the service does and answers a constant ``{"status":"WHITELISTED"}``: what the
service costs beyond aiohttp itself is the parsing of the identifiers and the decision.
``python benchmarks/bare_http.py HOST PORT`` prints ``ready PORT``.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp import web

BODY = b'{"status":"WHITELISTED"}'


async def equipment_status(request: web.Request) -> web.Response:
    if not request.query.get("pei"):
        return web.Response(status=400)
    return web.Response(body=BODY, content_type="application/json")


async def main(host: str, port: int) -> None:
    app = web.Application()
    app.router.add_get("/n5g-eir-eic/v1/equipment-status", equipment_status)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    print("ready", runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], int(sys.argv[2])))
