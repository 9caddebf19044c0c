"""Kubernetes' HTTP API, the apiserver's second front (kubectl, client libraries).

- app.py: the aiohttp application: routing, verbs → handler.RequestHandler, watch streams,
  Table output, Status errors, TLS that takes certificates and bearer tokens on one port.
- paths.py: REST path + method → verb, resource, namespace, name, subresource.
- negotiate.py: Content-Type and Accept (JSON/YAML bodies, patch types, `as=Table`).
- discovery.py: /api, /apis, per group-version resource lists, aggregated discovery.
- streams.py: pods/log as chunked text; websocket.py: exec, attach, port-forward.
"""
