"""One server, one port: a port another process holds is a one-line startup error, on HTTP and
on gRPC, even where that process shares its port between its own workers (SO_REUSEPORT), and
a gRPC connection ages out so that clients reach replicas added since."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from contextlib import contextmanager

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api.errors import V2, counted
from service.dataplane import DataPlane
from service.metrics import Metrics
from service.repository import ModelRepository
from service.rpc import inference_pb2 as pb
from service.rpc.methods import Stub
from service.rpc.server import GrpcServer
from service.settings import Settings
from tests.conftest import DEFAULT_MODELS
from tests.live_server import free_port


@contextmanager
def listening(reuse_port: bool):
    """A port held the way a server's socket holds it: listening, SO_REUSEPORT if its workers
    share it."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def serve(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "RNNSERVE_MODEL_REPOSITORY": str(DEFAULT_MODELS),
        "RNNSERVE_HOST": "127.0.0.1",
    }
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "shared-by-workers"])
def test_a_busy_http_port_is_a_one_line_startup_error(reuse_port):
    with listening(reuse_port) as port:
        done = serve("--port", str(port), "--grpc-port", str(free_port()))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"rnnserve serve: cannot listen on 127.0.0.1:{port} (RNNSERVE_PORT, --port): "
        "Address already in use"
    ]


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "shared-by-workers"])
def test_a_busy_grpc_port_is_a_one_line_startup_error(reuse_port):
    """The case of two servers that both listened on gRPC 8001 and split its connections."""
    with listening(reuse_port) as port:
        done = serve("--port", str(free_port()), "--grpc_port", str(port))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"rnnserve serve: cannot listen on 127.0.0.1:{port} (RNNSERVE_GRPC_PORT, --grpc-port): "
        "Address already in use"
    ]


def test_http_and_grpc_cannot_share_a_port():
    port = str(free_port())
    done = serve("--port", port, "--grpc-port", port)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"rnnserve serve: HTTP and gRPC cannot share port {port}: set RNNSERVE_GRPC_PORT"
    )


def grpc_server(tmp_path, **settings) -> GrpcServer:
    values, metrics = Settings(model_repository=tmp_path, host="127.0.0.1", **settings), Metrics()
    plane = DataPlane(ModelRepository(values, metrics), metrics, values)
    return GrpcServer(plane, counted(V2))


def test_one_worker_does_not_join_a_port_shared_by_another_servers_workers(tmp_path):
    """Without the startup check (a race with another server starting), the gRPC server itself
    refuses a port that another server's workers share: SO_REUSEPORT only with workers > 1."""

    async def start(port: int) -> None:
        server = grpc_server(tmp_path, grpc_port=port)
        try:
            await server.start()
        finally:
            await server.stop()

    with listening(reuse_port=True) as port, pytest.raises(RuntimeError):
        asyncio.run(start(port))


def test_a_grpc_connection_ages_out_and_the_client_reconnects(tmp_path):
    """After grpc_max_connection_age_s the server sends GOAWAY: the channel leaves READY (and
    would reconnect through the Service, to any replica); the next call simply works."""

    async def run() -> list[grpc.ChannelConnectivity]:
        port = free_port()
        server = grpc_server(tmp_path, grpc_port=port, grpc_max_connection_age_s=0.3)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = Stub(channel)
                assert (await stub.ServerLive(pb.ServerLiveRequest())).live
                states = [channel.get_state()]
                while states[-1] == grpc.ChannelConnectivity.READY:
                    await asyncio.wait_for(channel.wait_for_state_change(states[-1]), 30)
                    states.append(channel.get_state())
                assert (await stub.ServerLive(pb.ServerLiveRequest())).live
                return states
        finally:
            await server.stop()

    states = asyncio.run(run())
    assert states[0] == grpc.ChannelConnectivity.READY
    assert states[-1] != grpc.ChannelConnectivity.READY


def test_the_default_connection_age_lets_clients_rebalance_within_minutes():
    settings = Settings()
    assert 60 <= settings.grpc_max_connection_age_s <= 600
    assert settings.grpc_max_connection_age_grace_s >= settings.request_timeout_s


def test_every_listener_on_the_grpc_port_serves_the_methods_and_health(tmp_path):
    """The port's listeners (grpc.aio accepts one call at a time per listener) each serve the
    same service: 24 connections, spread by the kernel, all answer (a listener left without
    a connection here: 4 * 0.75**24, under 1 %)."""

    async def run() -> list[tuple[bool, int]]:
        server = grpc_server(tmp_path, grpc_port=0)
        await server.start()
        answers = []
        try:
            for _ in range(24):
                options = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own
                async with grpc.aio.insecure_channel(
                    f"127.0.0.1:{server.port}", options=options
                ) as channel:
                    live = await Stub(channel).ServerLive(pb.ServerLiveRequest())
                    check = health_pb2_grpc.HealthStub(channel).Check
                    health = await check(health_pb2.HealthCheckRequest(service="liveness"))
                    answers.append((live.live, health.status))
        finally:
            await server.stop()
        return answers

    serving = health_pb2.HealthCheckResponse.SERVING
    assert asyncio.run(run()) == [(True, serving)] * 24
