"""tk-apiserver: the only process that talks to etcd, and every other process's way to the cluster.

Two fronts over one registry (DESIGN §3), so a behaviour is written once:

- `rest/`: Kubernetes' own HTTP API (kubectl, the official client libraries): routing, content
  negotiation, discovery, Table output, watch streams, logs, exec/attach/port-forward;
- `service.py`: the gRPC `Api` service (tinykube's components, tkctl);
- `handler.py`: what every request goes through whichever front it came by: authentication
  (`authn.py`), impersonation, authorization (`authz.py`, `rbac.py`, the Node authorizer), the
  registry, audit (`audit.py`), metrics (`metrics.py`);
- `registry.py`: the verbs' meaning over storage (create, update with compare-and-swap, patch of
  four kinds, server-side apply, delete with finalizers and grace, scale, binding, eviction),
  with admission (`admission.py`, `noderestriction.py`, `allocator.py`) and the review kinds
  (`reviews.py`, `tokens.py`);
- `storage.py` (etcd, `encryption.py` at rest) and `watchcache.py` (one etcd watch per resource
  fanned out to every client watch);
- `openapi.py`, `openapi_pb.py`: the OpenAPI documents, generated from the models in `api/`;
- `kubeletproxy.py`: logs, exec and port-forward relayed to the pod's kubelet;
- `kubernetes_service.py`, `bootstrap_policy.py`: what the apiserver writes about itself;
- `server.py`: the process (start-up, listeners, shutdown); `__main__.py`: flags → Config.
"""
