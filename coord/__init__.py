"""coord: a client for coord-server and etcd v3."""
