"""Prediction writers: they live in :mod:`dainet.formats.predictions`, with the readers.

Kept as an import path because ``dainet.inference`` re-exports them from here.
"""
from dainet.formats.predictions import (FORMATS, darkface_prediction_text, wider_prediction_text,
                                        write_darkface_prediction, write_wider_prediction)

__all__ = ["FORMATS", "darkface_prediction_text", "wider_prediction_text",
           "write_darkface_prediction", "write_wider_prediction"]
