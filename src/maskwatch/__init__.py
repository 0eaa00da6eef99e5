"""maskwatch: find faces and tell whether each wears a mask properly.

    >>> import maskwatch
    >>> result = maskwatch.analyze("photo.jpg")
    >>> [(f.label, f.confidence) for f in result.faces]
"""

from maskwatch.pipeline import Pipeline, PipelineConfig, analyze
from maskwatch.types import LABELS, Face, FrameResult

__all__ = ["LABELS", "Face", "FrameResult", "Pipeline", "PipelineConfig", "analyze"]
__version__ = "0.1.0"
