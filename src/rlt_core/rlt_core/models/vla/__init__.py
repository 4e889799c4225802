"""Frozen VLA backbones behind one small interface (`VLABackbone`), and the default small VLA."""

from rlt_core.models.vla.backbone import VLABackbone, VLAInput, VLAOutput

__all__ = ['VLAInput', 'VLABackbone', 'VLAOutput']
