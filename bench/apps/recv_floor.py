"""Reference (2), the floor of a durable receiver: HMAC check on the raw bytes, then one async Redis LPUSH.

Anything that stores before acknowledging does at least this. Settings from the environment: BENCH_AMT,
BENCH_REDIS_URL, BENCH_LIST (the list the bodies are pushed to).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

AMT = os.environ["BENCH_AMT"].encode()
LIST = os.environ["BENCH_LIST"]
redis = Redis.from_url(os.environ["BENCH_REDIS_URL"])


async def hook(request: Request) -> Response:
    raw = await request.body()
    signature = request.headers.get("sc-signature", "")
    if not hmac.compare_digest(hmac.new(AMT, raw, hashlib.sha256).hexdigest(), signature):
        return Response(status_code=401)
    await redis.lpush(LIST, raw)
    return JSONResponse({"status": "stored"})


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    yield
    await redis.aclose()


app = Starlette(routes=[Route("/webhooks/smartcar", hook, methods=["POST"])], lifespan=lifespan)
