"""
The agent daemon: configuration, the service tree and the command line.
"""
