"""Service environment variables (upstream pkg/kubelet/envvars and getServiceEnvVarMap).

Expected values are written out the way upstream's envvars_test.go and the Kubernetes
documentation list them (`REDIS_MASTER_PORT_6379_TCP_ADDR=...`), not computed."""

from __future__ import annotations

import asyncio
from typing import Any

from kubelet.envvars import container_env, service_env, services_for_pod

Obj = dict[str, Any]


def svc(name: str, ip: str, *ports: Obj, namespace: str = "default") -> Obj:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": ip, "ports": list(ports)}}


def test_one_unnamed_tcp_port_gives_the_documented_seven_variables() -> None:
    env = service_env([svc("redis-master", "10.0.0.11", {"port": 6379, "protocol": "TCP"})])
    assert env == {
        "REDIS_MASTER_SERVICE_HOST": "10.0.0.11",
        "REDIS_MASTER_SERVICE_PORT": "6379",
        "REDIS_MASTER_PORT": "tcp://10.0.0.11:6379",
        "REDIS_MASTER_PORT_6379_TCP": "tcp://10.0.0.11:6379",
        "REDIS_MASTER_PORT_6379_TCP_PROTO": "tcp",
        "REDIS_MASTER_PORT_6379_TCP_PORT": "6379",
        "REDIS_MASTER_PORT_6379_TCP_ADDR": "10.0.0.11",
    }


def test_named_ports_udp_and_the_first_port_rule() -> None:
    env = service_env([svc("dns", "10.96.0.10", {"name": "dns", "port": 53, "protocol": "UDP"},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP"})])
    assert env["DNS_SERVICE_PORT"] == "53"
    assert env["DNS_SERVICE_PORT_DNS"] == "53"
    assert env["DNS_SERVICE_PORT_DNS_TCP"] == "53"
    # Docker special-cases the first port only.
    assert env["DNS_PORT"] == "udp://10.96.0.10:53"
    assert env["DNS_PORT_53_UDP"] == "udp://10.96.0.10:53"
    assert env["DNS_PORT_53_UDP_PROTO"] == "udp"
    assert env["DNS_PORT_53_TCP"] == "tcp://10.96.0.10:53"
    assert env["DNS_PORT_53_TCP_ADDR"] == "10.96.0.10"
    assert len(env) == 13  # host, 3 port names, the first-port link, 4 per port


def test_a_port_without_protocol_is_tcp_and_ipv6_is_bracketed() -> None:
    env = service_env([svc("v6", "fd00::1", {"port": 80})])
    assert env["V6_PORT"] == "tcp://[fd00::1]:80"
    assert env["V6_PORT_80_TCP_ADDR"] == "fd00::1"


def test_headless_and_ip_less_services_give_nothing() -> None:
    assert service_env([svc("headless", "None", {"port": 80}),
                        svc("pending", "", {"port": 80})]) == {}


SERVICES = [
    svc("kubernetes", "10.96.0.1", {"name": "https", "port": 443}),
    svc("web", "10.96.0.20", {"port": 80}),
    svc("api", "10.96.0.30", {"port": 8080}, namespace="shop"),
    svc("db", "None", {"port": 5432}, namespace="shop"),
    svc("other", "10.96.0.40", {"port": 1}, namespace="elsewhere"),
]


def names(services: list[Obj]) -> list[str]:
    return [f"{s['metadata']['namespace']}/{s['metadata']['name']}" for s in services]


def test_a_pod_gets_its_namespaces_services_and_the_kubernetes_service() -> None:
    assert names(services_for_pod(SERVICES, "shop", True)) == ["shop/api", "default/kubernetes"]
    assert names(services_for_pod(SERVICES, "default", True)) == [
        "default/kubernetes", "default/web"]


def test_enable_service_links_false_keeps_only_the_kubernetes_service() -> None:
    assert names(services_for_pod(SERVICES, "shop", False)) == ["default/kubernetes"]
    assert names(services_for_pod(SERVICES, "default", False)) == ["default/kubernetes"]


def test_a_namespaces_own_kubernetes_service_wins_when_links_are_on() -> None:
    own = svc("kubernetes", "10.96.0.99", {"port": 1}, namespace="shop")
    for order in ([*SERVICES, own], [own, *SERVICES]):
        chosen = services_for_pod(order, "shop", True)
        assert [s["spec"]["clusterIP"] for s in chosen
                if s["metadata"]["name"] == "kubernetes"] == ["10.96.0.99"]
    assert [s["spec"]["clusterIP"] for s in services_for_pod([*SERVICES, own], "shop", False)
            ] == ["10.96.0.1"]


def test_the_pods_own_variables_win_and_may_refer_to_service_variables() -> None:
    links = service_env([svc("web", "10.96.0.20", {"port": 80})])
    pod: Obj = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "n"}}
    container: Obj = {"name": "c", "env": [
        {"name": "WEB_SERVICE_PORT", "value": "8080"},
        {"name": "URL", "value": "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)"},
    ]}
    env = asyncio.run(container_env(None, pod, container,  # type: ignore[arg-type]
                                    pod_ip="10.244.0.5", host_ip="10.0.0.1", node_name="n",
                                    services=links))
    as_dict = dict(env)
    assert as_dict["WEB_SERVICE_PORT"] == "8080"
    assert as_dict["URL"] == "http://10.96.0.20:8080"
    assert as_dict["WEB_SERVICE_HOST"] == "10.96.0.20"
    # The pod's own variables first, in their order; then the links it did not define.
    assert [k for k, _ in env][:2] == ["WEB_SERVICE_PORT", "URL"]
    assert [k for k, _ in env].count("WEB_SERVICE_PORT") == 1
