"""The configuration of a local Kafka node (``server.properties``), for a cluster of N nodes.

docker-compose.kafka.yml (one node) and docker-compose.kafka-3.yml (three)
mirror it; tests/unit/test_broker_config.py checks they agree.

Replication follows the cluster's size: internal topics and new topics get
min(3, N) replicas, and an acks=all write needs all but one of them
(``min.insync.replicas`` = max(1, min(3, N) − 1)), so one node may be down
without refusing writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from devstack.broker.layout import Node, quorum_voters
from devstack.broker.security import BROKER_USER, BrokerSecurity


def replication_factor(nodes: int) -> int:
    """Replicas of the internal topics and the broker's default for new topics: min(3, N)."""
    return min(3, nodes)


def min_insync_replicas(nodes: int) -> int:
    """Replicas an acks=all write needs: all but one, at least 1."""
    return max(1, replication_factor(nodes) - 1)


def listener_properties(node: Node, security: BrokerSecurity | None) -> dict[str, str]:
    """The node's listeners: plaintext when ``security`` is None, else secured.

    Secured: the client listener ``SECURE`` is SASL_SSL with SCRAM-SHA-512,
    for clients and for the nodes' own inter-broker traffic (as the user
    ``broker``); the ``CONTROLLER`` listener is TLS with client certificates
    required (mTLS; KRaft has no SCRAM there, KAFKA-15513), the certificate's
    CN mapped to the principal (``User:broker``). ``StandardAuthorizer``
    refuses anything no ACL allows; only ``User:broker`` is a super user.
    """
    h, p, c = node.host, node.port, node.controller_port
    if security is None:
        return {
            "listeners": f"PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            "advertised.listeners": f"PLAINTEXT://{h}:{p}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        }
    jaas = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_USER}" password="{security.broker_password}";')
    return {
        "listeners": f"SECURE://{h}:{p},CONTROLLER://{h}:{c}",
        "advertised.listeners": f"SECURE://{h}:{p}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "SECURE",
        "listener.security.protocol.map": "CONTROLLER:SSL,SECURE:SASL_SSL",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.secure.scram-sha-512.sasl.jaas.config": jaas,
        "listener.name.secure.scram-sha-256.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(security.keystore_file),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(security.ca_file),
        "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
        "ssl.endpoint.identification.algorithm": "https",
        "listener.name.controller.ssl.client.auth": "required",
        "ssl.principal.mapping.rules": "RULE:^CN=([A-Za-z0-9._-]+)$/$1/,DEFAULT",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{BROKER_USER}",
    }


def server_properties(node: Node, cluster: Sequence[Node],
                      security: BrokerSecurity | None = None) -> dict[str, str]:
    """``node``'s configuration as a member of ``cluster`` (every node, ``node`` included),
    secured with ``security`` (devstack/broker/security.py) unless it is None."""
    rf = str(replication_factor(len(cluster)))
    isr = str(min_insync_replicas(len(cluster)))
    return {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": quorum_voters(cluster),
        **listener_properties(node, security),
        "log.dirs": str(node.data_dir),
        "num.partitions": "6",
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "transaction.state.log.num.partitions": "6",
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": isr,
        "group.initial.rebalance.delay.ms": "0",
        # `positioning dlq replay` remembers what it replayed as a group's committed offsets:
        # kept 30 days after the last commit, longer than the dead letters' 14 (decision 0012).
        "offsets.retention.minutes": str(30 * 24 * 60),
        # A restarted broker re-registers once its old session expires, and a
        # killed one is fenced (its partitions get new leaders) once its session
        # expires: keep that short so both take seconds, not ten.
        "broker.heartbeat.interval.ms": "500",
        "broker.session.timeout.ms": "2000",
        # A killed quorum leader is replaced after a second without its
        # fetches (default 2 s) and at most half a second of election backoff
        # (default 1 s): with the session above, a node that led both the
        # quorum and partitions is replaced within the origin's 5 s login
        # budget (docs/decisions/0009-local-kafka-cluster.md).
        "controller.quorum.fetch.timeout.ms": "1000",
        "controller.quorum.election.backoff.max.ms": "500",
        # One network thread and two request handlers instead of 3 and 8: a local node
        # shares a few cores with everything else, and fewer threads cost it less CPU
        # for the same requests (measured: docs/decisions/0019-cpu-per-login.md).
        "num.network.threads": "1",
        "num.io.threads": "2",
        # Compaction that is visible in a development session.
        "log.cleaner.min.cleanable.ratio": "0.1",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }


def with_overrides(properties: Mapping[str, str], lines: Sequence[str]) -> dict[str, str]:
    """``properties`` with ``key=value`` ``lines`` added, each replacing its key's value.

    Raises:
        ValueError: a line is not ``key=value`` with a non-empty key.
    """
    out = dict(properties)
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"a server.properties override is `key=value`, not {line!r}")
        out[key.strip()] = value.strip()
    return out


def render(properties: Mapping[str, str]) -> str:
    """The text of a ``server.properties`` file."""
    return "".join(f"{k}={v}\n" for k, v in properties.items())
