"""The HTML report: page assembly, figures and the figures of the paper's experiments."""
