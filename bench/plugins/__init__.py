"""
Drop-in plugin sources the bench copies into its agents' C{clacks/plugins/}
directories (this package itself is never loaded by an agent).
"""
