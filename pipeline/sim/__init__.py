"""The embedded simulated survey; :mod:`pipeline.sim.survey` makes it and :mod:`pipeline.steps.simulate` runs it."""
