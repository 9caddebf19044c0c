"""tkctl: tinykube's command-line client, speaking kubectl's verbs, flags and output shapes.

It talks to the apiserver only through `client.ApiClient` and works on the JSON dicts the server
returns (as kubectl works on unstructured objects), so that an upstream habit — `apply -f`,
`get -o wide`, `describe`, `delete --cascade=orphan` — carries over unchanged.
"""
