"""
The HTTP interface handler: health endpoints now, JSON-RPC later.
"""
