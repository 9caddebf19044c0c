"""The multi-node lab: a tinykube cluster on one machine, every node a container (like kind).

`lab/lab` (`python -m lab`) writes the cluster's certificates, fills in
`lab/docker-compose.yml` and drives docker-compose; the node image is `lab/node/build`'s and
every container's first process is `lab/node/entrypoint`. It talks to the cluster only as a user
does: through `tkctl` with the admin kubeconfig it wrote, and `docker exec` into the nodes.
"""
