"""I/O adapters the engine drives: routers, deployers, health checks, metrics."""
