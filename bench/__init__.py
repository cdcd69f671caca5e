"""pipecored's benchmark: ``python -m bench [--smoke]`` (see docs/PERFORMANCE.md)."""
