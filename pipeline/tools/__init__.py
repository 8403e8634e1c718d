"""Commands that are no workflow rule: config validation and the SLURM profile set-up."""
