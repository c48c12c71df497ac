"""
The reliability suite: real C{clacks-agent} processes on a real RabbitMQ,
under faults (killed agents, cut and silent networks, broker restarts),
SIGTERM during load, fuzzed inputs and hostile callers.

The tests that need the broker and child processes run only when
C{CLACKS_RELIABILITY=1} (C{make reliability} sets it); each scenario writes
one row of figures to C{CLACKS_RELIABILITY_RESULTS}, and C{python -m
tests.reliability.report} prints them as one table.  See
C{docs/reliability.md}.
"""
