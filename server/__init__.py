"""coord.server: the etcd-v3-compatible coordination server (installed from server/)."""
