"""
A drop-in package with no drop-ins: tests pass it as C{dropins=} so that
drop-ins of the developer's environment do not leak into them.
"""
