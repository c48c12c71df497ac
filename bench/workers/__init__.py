"""
The processes the bench starts: load generators and baseline servers.  Each
is run as C{python -m bench.workers.NAME ARGS}; a load generator prints its
result as a C{BENCH-RESULT {json}} line (see L{bench.stats.emit}).
"""
