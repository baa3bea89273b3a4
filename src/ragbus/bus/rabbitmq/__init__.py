"""The RabbitMQ bus (aio-pika), one module per role; see :mod:`ragbus.bus.rabbitmq.bus`
and ``docs/rabbitmq.md``."""

from ragbus.bus.rabbitmq.bus import RabbitMQBus
from ragbus.bus.rabbitmq.dead_letters import RabbitMQDeadLetters
from ragbus.bus.rabbitmq.topology import Topology

__all__ = ["RabbitMQBus", "RabbitMQDeadLetters", "Topology"]
