"""The etcd v3 gRPC API: services over grpclib with a pass-through codec."""

from .auth import AuthService
from .common import ApiContext
from .forward import ForwardingLeaseService
from .kv import KVService
from .lease import LeaseService
from .maintenance import ClusterService, MaintenanceService
from .rawcodec import RawCodec
from .watch import WatchService

__all__ = [
    "ApiContext",
    "AuthService",
    "ClusterService",
    "ForwardingLeaseService",
    "KVService",
    "LeaseService",
    "MaintenanceService",
    "RawCodec",
    "WatchService",
]
