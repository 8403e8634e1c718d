"""Private parts of the embedded simulated survey; the public entry point is :mod:`pipeline.simulate`."""
