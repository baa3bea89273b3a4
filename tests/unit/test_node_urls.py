"""A list of nodes in ``RAGBUS_AMQP_URL``, and the queue arguments that replicate every
queue: checked without a broker."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ragbus.bus.rabbitmq.connection import BrokerConnection, node_address, split_nodes
from ragbus.bus.rabbitmq.topology import DEAD_LETTER_DELIVERY_LIMIT, Topology
from ragbus.config import Settings
from ragbus.config.redaction import secrets_of

NODES = "amqp://app:s3cret-1@rabbit-1:5672/, amqp://app:s3cret-2@rabbit-2:5673/v,"


def test_a_list_of_nodes_is_split_in_order_and_blanks_are_ignored() -> None:
    assert split_nodes(NODES) == (
        "amqp://app:s3cret-1@rabbit-1:5672/",
        "amqp://app:s3cret-2@rabbit-2:5673/v",
    )
    assert split_nodes("amqp://rabbit/") == ("amqp://rabbit/",)
    with pytest.raises(ValueError, match="names no node"):
        split_nodes(" , ")


def test_a_node_is_named_by_its_address_never_its_password() -> None:
    assert node_address("amqp://app:s3cret@rabbit-1:5673/") == "rabbit-1:5673"
    assert node_address("amqp://rabbit-1/") == "rabbit-1:5672"
    assert node_address("amqp://u:p@[::1]:5672/") == "[::1]:5672"


def test_a_connection_masks_every_node() -> None:
    connection = BrokerConnection(NODES, name="t")
    assert connection.nodes == split_nodes(NODES)
    assert connection.masked_url == ("amqp://app:***@rabbit-1:5672/,amqp://app:***@rabbit-2:5673/v")
    assert connection.node == "amqp://app:***@rabbit-1:5672/"  # the first, until it connects


def test_settings_take_a_list_of_nodes_and_check_each_one() -> None:
    settings = Settings(_env_file=None, amqp_url=NODES.rstrip(", "))  # type: ignore[call-arg]
    assert "s3cret" not in repr(settings)
    secrets = secrets_of(settings)
    assert "s3cret-1" in secrets and "s3cret-2" in secrets  # each node's password redacted
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, amqp_url="amqp://app:s3cret@a/,http://app:s3cret@b/")  # type: ignore[call-arg]
    assert "s3cret" not in str(raised.value)
    assert "not a valid amqp:// or amqps:// URL" in str(raised.value)


def test_the_group_size_is_a_setting_of_at_least_one() -> None:
    assert Settings(_env_file=None).quorum_initial_group_size == 3  # type: ignore[call-arg]
    five = Settings(_env_file=None, quorum_initial_group_size=5)  # type: ignore[call-arg]
    assert five.quorum_initial_group_size == 5
    with pytest.raises(ValidationError):
        Settings(_env_file=None, quorum_initial_group_size=0)  # type: ignore[call-arg]


def test_every_durable_queue_is_a_replicated_quorum_queue() -> None:
    topology = Topology(exchange="e", prefix="p", delay_tiers=(1.0,), quorum_group_size=5)
    replicated = {"x-queue-type": "quorum", "x-quorum-initial-group-size": 5}
    every = [
        topology.stage_arguments("s"),
        topology.dead_letter_arguments(),
        topology.retry_arguments("s", 1.0),
        topology.sink_arguments(10, 60),
    ]
    for arguments in every:
        assert replicated.items() <= arguments.items()


def test_listing_can_never_use_up_a_dead_letter_queues_delivery_limit() -> None:
    limit = Topology(exchange="e", prefix="p").dead_letter_arguments()["x-delivery-limit"]
    # -1 would be "dead-letter at the first return" on RabbitMQ 3.10, and RabbitMQ 4
    # limits a quorum queue without a limit to 20 deliveries: one per listing.
    assert limit == DEAD_LETTER_DELIVERY_LIMIT >= 1_000_000


def test_a_retry_goes_back_to_its_stage_at_least_once() -> None:
    arguments = Topology(exchange="e", prefix="p").retry_arguments("s", 5.0)
    assert arguments["x-dead-letter-routing-key"] == "p.s"
    assert arguments["x-message-ttl"] == 5000
    # at-least-once dead-lettering needs reject-publish overflow: without it RabbitMQ
    # quietly dead-letters at most once
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    assert arguments["x-overflow"] == "reject-publish"


def test_a_stage_queue_is_bounded_and_dead_letters_at_least_once() -> None:
    arguments = Topology(exchange="e", prefix="p", max_length=50).stage_arguments("s")
    assert arguments["x-max-length"] == 50
    # a full stage queue refuses publishers (backpressure) instead of dropping its head
    assert arguments["x-overflow"] == "reject-publish"
    # which is also what lets a quorum queue dead-letter at least once
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    assert arguments["x-dead-letter-routing-key"] == "p.s.dlq"
    assert "x-max-length" not in Topology(exchange="e", prefix="p").dead_letter_arguments()
