"""Shared definitions of the pipeline: z grid, metrics, folds, sky, bands, preprocessing, resampling, io, logging."""
