"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from service.api.inference import dataplane
from service.responses import FastJSONResponse

router = APIRouter(tags=["health"])


@router.get("/v2/health/live")
async def live() -> FastJSONResponse:
    """The process answers."""
    return FastJSONResponse({"live": True})


@router.get("/v2/health/ready")
async def ready(request: Request) -> FastJSONResponse:
    """200 once every model has loaded and answered a warm-up inference, else 503 and why."""
    plane = dataplane(request)
    reasons = plane.not_ready()
    if reasons:
        return FastJSONResponse({"ready": False, "error": "; ".join(reasons)}, status_code=503)
    problems = plane.problems()  # failed versions of models that serve all the same
    return FastJSONResponse({"ready": True, "problems": problems} if problems else {"ready": True})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """This process's series; with several workers, every worker's (multiprocess mode)."""
    registry = request.app.state.metrics.prometheus
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder and request.app.state.settings.workers > 1:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, folder)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
