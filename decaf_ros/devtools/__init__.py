"""Development assets: tiny-model recipe, dense references, memory probes.

Used by the tests, the benchmarks and the executables' tiny-model fallback; the runtime
library (``decaf_ros.core``) never imports this package.
"""
