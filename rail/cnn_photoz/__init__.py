"""The RAIL stages of the cnn-photoz pipeline (``rail.<package>`` imports its algorithms, as RAIL packages do, so
that ``rail.stages.import_and_attach_all()`` finds them)."""

from rail.estimation.algos.cnn_photoz import *  # noqa: F403

from pipeline import __version__ as __version__
