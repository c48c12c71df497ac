"""
Calling clacks agents from Python.

L{AMQPClient} is the minimal Twisted caller: it connects to the broker,
publishes JSON-RPC requests on the domain's commands exchange and waits
for the replies (RabbitMQ direct reply-to).
"""

from clacks.client.amqp import AMQPClient, CallError

__all__ = ["AMQPClient", "CallError"]
