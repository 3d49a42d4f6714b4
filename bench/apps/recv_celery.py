"""Reference (3), the naive receiver: the HMAC check, then Celery's `send_task` in the threadpool per request.

What a Celery user writes first. Settings from the environment: BENCH_AMT, BENCH_REDIS_URL (the broker),
BENCH_QUEUE (the queue the tasks land in; nothing consumes it during the run).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from celery import Celery
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

AMT = os.environ["BENCH_AMT"].encode()
QUEUE = os.environ["BENCH_QUEUE"]
celery = Celery(broker=os.environ["BENCH_REDIS_URL"])


async def hook(request: Request) -> Response:
    raw = await request.body()
    signature = request.headers.get("sc-signature", "")
    if not hmac.compare_digest(hmac.new(AMT, raw, hashlib.sha256).hexdigest(), signature):
        return Response(status_code=401)
    event = json.loads(raw)
    await run_in_threadpool(celery.send_task, "process_event", args=[event], queue=QUEUE)
    return JSONResponse({"status": "queued"})


app = Starlette(routes=[Route("/webhooks/smartcar", hook, methods=["POST"])])
