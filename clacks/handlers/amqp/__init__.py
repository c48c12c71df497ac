"""
The AMQP interface handler.
"""
