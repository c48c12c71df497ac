"""
A drop-in package holding one drop-in module, L{tests.util.dropins.greeter}.
"""
