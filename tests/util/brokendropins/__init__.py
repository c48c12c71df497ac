"""
A drop-in package whose only drop-in, C{broken.py}, fails to import.
"""
