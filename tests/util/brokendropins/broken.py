"""
A drop-in module that fails to import.
"""

raise RuntimeError("this drop-in is broken on purpose")
