"""The HTTP layer in front of the app: uvicorn's httptools protocol with a time limit on every phase of a connection,
limits on the request head, a cap on connections, and JSON for every error it answers itself."""

from service.http.limits import ConnectionLimits, raise_open_file_limit
from service.http.protocol import GuardedHttpToolsProtocol
from service.http.table import ConnectionTable, Phase

__all__ = ["ConnectionLimits", "ConnectionTable", "GuardedHttpToolsProtocol", "Phase", "raise_open_file_limit"]
