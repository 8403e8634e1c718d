"""On-disk formats, each with one owner: cubes (cutouts and datacube), PDFs, predictions, checkpoints, drop tables."""
