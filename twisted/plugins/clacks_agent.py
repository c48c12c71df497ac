"""
twistd drop-in: C{twistd clacks-agent}.  Only the service maker lives here;
the tap module is imported when twistd needs it.
"""

from twisted.application.service import ServiceMaker

clacksAgent = ServiceMaker(
    "clacks-agent",
    "clacks.agent.tap",
    "The clacks agent daemon: plugins, AMQP and HTTP interface handlers.",
    "clacks-agent",
)
