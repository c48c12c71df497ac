"""
clacks-agent benchmarks: C{python -m bench} (C{make bench}).

See C{bench/README.md}.  Nothing here is imported by the agent.
"""
