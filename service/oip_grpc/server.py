"""The gRPC server beside the HTTP one: started by the app's lifespan on the same event loop, stopped before the
batchers drain.

Limits, as for HTTP connections: a message is at most LABELSERVE_MAX_REQUEST_BYTES; at most LABELSERVE_MAX_UPLOADS
calls are handled at once (more get RESOURCE_EXHAUSTED at once, as an HTTP body beyond the upload slots gets 503);
a connection with no call for LABELSERVE_KEEP_ALIVE_S is closed; 100 concurrent streams per connection. With
several workers every worker binds the same port (SO_REUSEPORT) and the kernel spreads the connections.
"""

from __future__ import annotations

import logging

import grpc

from service.oip_grpc._generated import grpc_service_pb2_grpc as pb_grpc
from service.oip_grpc.servicer import InferenceServicer
from service.state import ServiceState

__all__ = ["GrpcServer"]

logger = logging.getLogger(__name__)


class GrpcServer:
    """One process's gRPC server for the OIP `GRPCInferenceService`."""

    def __init__(self, state: ServiceState) -> None:
        settings = state.settings
        options = [
            ("grpc.max_receive_message_length", settings.max_request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),  # a second server on the port is an error
            ("grpc.max_concurrent_streams", 100),
            ("grpc.max_connection_idle_ms", int(settings.keep_alive_s * 1000)),
        ]
        self._server = grpc.aio.server(options=options, maximum_concurrent_rpcs=settings.max_uploads)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(state), self._server)
        self._address = f"{settings.host}:{settings.grpc_port}"
        self.port = 0

    async def start(self) -> int:
        """Bind and start serving; returns the port (the kernel's choice for port 0).

        Raises:
            RuntimeError: the port could not be bound.
        """
        try:
            self.port = self._server.add_insecure_port(self._address)
        except RuntimeError as exc:
            raise RuntimeError(f"gRPC could not bind {self._address} ({exc}); set LABELSERVE_GRPC_PORT to a free "
                               "port, or LABELSERVE_GRPC=false") from None
        await self._server.start()
        host = self._address.rsplit(":", 1)[0]
        logger.info("gRPC (KServe v2 GRPCInferenceService) running on %s:%d", host, self.port,
                    extra={"grpc_port": self.port})
        return self.port

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls, let those running finish for up to `grace_s`, then cancel them."""
        await self._server.stop(grace_s)
