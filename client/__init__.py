"""Everything a component needs to talk to the apiserver the way client-go lets Go programs do.

Components never share memory or import each other (DESIGN §1); each rebuilds its view of the
cluster by list + watch and acts through API calls. This package is that machinery, with
client-go's names so that Kubernetes knowledge carries over:

- `apiclient`: the typed async gRPC client (ApiClient, ResourceClient), over TLS with a client
  certificate or bearer token, optionally impersonating another user;
- `config`: kubeconfig files and in-cluster ServiceAccount config -> ClientConfig;
- `pki`: the cluster CA, certificates, keys and kubeconfigs (`tkctl pki init`, the harness);
- `store`: Store / Indexer / Lister, the local cache;
- `reflector`: Reflector, list + watch into a Store, surviving restarts and `Gone`;
- `informer`: SharedInformer, SharedInformerFactory, ResourceEventHandler;
- `workqueue`: RateLimitingQueue, rate limiters, `run_workers`, and clocks for tests;
- `leaderelection`: LeaderElector on a coordination.k8s.io Lease;
- `events`: EventRecorder, aggregated and rate-limited core/v1 Events.

`client` imports only `api` (enforced by import-linter).
"""
