"""
Plugin and object registries and the plugin base class.
"""
