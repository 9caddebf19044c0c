"""The shared vocabulary of tinykube: Kubernetes-shaped object models, their wire codec,
defaulting and validation, label/field selectors, quantities and API errors.

Every other package (client, apiserver, controllers, kubelet, ...) speaks in these types, so this
package does no I/O and imports nothing else of ours; it is the one place a field is defined.
"""
