"""The per-image work around the engine: decode, preprocess, postprocess. Plain blocking functions."""

from service.pipeline.decode import ACCEPTED_FORMATS, DecodeLimits, decode_image
from service.pipeline.postprocess import PostprocessOptions, Prediction, postprocess
from service.pipeline.preprocess import to_network_input

__all__ = ["ACCEPTED_FORMATS", "DecodeLimits", "PostprocessOptions", "Prediction", "decode_image", "postprocess",
           "to_network_input"]
