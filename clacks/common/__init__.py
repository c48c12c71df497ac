"""
Building blocks shared by the agent, its handlers and its plugins.
"""
