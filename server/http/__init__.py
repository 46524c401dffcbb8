"""etcd's HTTP/JSON gateway and the single client port shared with gRPC.

* :mod:`.mux` - :class:`ClientListener`: one listener per client URL; HTTP/2 (the gRPC preface,
  or TLS ALPN ``h2``) goes to grpclib, HTTP/1.1 to the gateway.
* :mod:`.gateway` - :class:`Gateway`: ``/v3/...`` JSON bindings, ``/health``, ``/version``,
  calling the gRPC handlers in-process.
* :mod:`.inprocess` - :class:`~.inprocess.GatewayStream`: the stand-in for grpclib's server
  stream those in-process calls run with.
* :mod:`.jsonpb` - etcd's JSON mapping of protobuf messages, generic over betterproto2 classes.
"""

from .gateway import Gateway
from .jsonpb import JsonMappingError, from_json, to_json
from .mux import ClientListener

__all__ = ["ClientListener", "Gateway", "JsonMappingError", "from_json", "to_json"]
