"""The persona model: documents in, frozen validated values out. Pure: no I/O."""

from netpersona.model import persona, protocols
from netpersona.model.load import load_document
from netpersona.model.parse import parse_persona, parse_persona_text
from netpersona.model.persona import *  # noqa: F403 (the public names are persona's __all__)
from netpersona.model.protocols import *  # noqa: F403

__all__ = ["load_document", "parse_persona", "parse_persona_text"]
__all__ += persona.__all__
__all__ += protocols.__all__
