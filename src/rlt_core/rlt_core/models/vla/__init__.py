"""Frozen VLA backbones behind one small interface (`VLABackbone`), and the default small VLA."""

from rlt_core.models.vla.backbone import Observation, VLABackbone, VLAOutput

__all__ = ['Observation', 'VLABackbone', 'VLAOutput']
