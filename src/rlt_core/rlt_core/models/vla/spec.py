"""The backbone spec: which frozen VLA to run, named by one string wherever a VLA is loaded.

  ''                                  the robot profile's committed small VLA (rlt_bringup's models/<profile>/vla)
  /path/to/folder                     a `SmallVLA` checkpoint folder (also `small:/path/to/folder`)
  pi0:/path/to/folder                 a pi0 saved by transformers, through `Pi0Backbone.from_pretrained`
                                      (a local folder only: nothing is downloaded)
  module.path:ClassName[:/path]       a user class implementing `VLABackbone`

A user class is built by its classmethod `ClassName.load(path)` when the spec names a path, else by
`ClassName()`; either way the loader then moves it to the device, casts it with `to_dtype` and freezes
it. For the graph's actor and arbiter, which need only the proprio normalisation of the RL state,
the class also implements the classmethod `proprio_stats(path)`.

`check_backbone` compares a loaded backbone with the robot profile it is to drive; `proprio_stats`
reads the normalisation of any spec without building the model.
"""

import importlib
import re
from dataclasses import dataclass, replace
from pathlib import Path

from rlt_core.control.profile import ProfileError, RobotProfile
from rlt_core.runtime import default_models_dir

KINDS = ('small', 'pi0', 'class')
DTYPES = ('float32', 'bfloat16', 'float16')
CLASS_SPEC = re.compile(r'^(?P<module>[A-Za-z_][\w.]*):(?P<name>[A-Za-z_]\w*)(?::(?P<path>.+))?$')
"""module.path:ClassName, optionally followed by :/path."""


@dataclass(frozen=True)
class BackboneSpec:
    kind: str
    """'small' (SmallVLA), 'pi0' (Pi0Backbone) or 'class' (a user's VLABackbone)."""
    path: Path | None
    """The checkpoint folder (None: a user class built without one)."""
    target: str = ''
    """'module.path:ClassName' of a user class."""

    @classmethod
    def parse(cls, spec: 'str | Path | BackboneSpec', profile_name: str = '') -> 'BackboneSpec':
        """Read a spec string (forms in the module docstring); an existing folder is always a SmallVLA's. An empty
        one names the committed VLA of the robot profile `profile_name`."""
        if isinstance(spec, BackboneSpec):
            return spec
        text = str(spec).strip()
        if not text:
            if not profile_name:
                raise ValueError('an empty backbone spec names the committed VLA of a profile; no profile given')
            return cls('small', default_models_dir(profile_name) / 'vla')
        for kind in ('small', 'pi0'):
            if text.startswith(f'{kind}:'):
                folder = text[len(kind) + 1:]
                if not folder:
                    raise ValueError(f'backbone spec {text!r} names no folder ({kind}:/path/to/folder)')
                return cls(kind, Path(folder))
        match = CLASS_SPEC.match(text)
        if match and not Path(text).exists():
            path = match['path']
            return cls('class', Path(path) if path else None, f"{match['module']}:{match['name']}")
        return cls('small', Path(text))

    def resolved(self) -> 'BackboneSpec':
        """The same spec with an absolute folder, for processes started in another directory."""
        return replace(self, path=self.path.resolve()) if self.path else self

    def __str__(self) -> str:
        if self.kind == 'class':
            return self.target + (f':{self.path}' if self.path else '')
        return f'{self.kind}:{self.path}'

    def backbone_class(self) -> type:
        """The VLABackbone subclass this spec names (imports it)."""
        if self.kind == 'small':
            from rlt_core.models.vla.small_vla import SmallVLA
            return SmallVLA
        if self.kind == 'pi0':
            from rlt_core.models.vla.pi0 import Pi0Backbone
            return Pi0Backbone
        from rlt_core.models.vla.backbone import VLABackbone
        module_name, class_name = self.target.split(':')
        try:
            found = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as err:
            raise ValueError(f'backbone spec {self}: cannot import {self.target} ({err})') from err
        if not (isinstance(found, type) and issubclass(found, VLABackbone)):
            raise ValueError(f'backbone spec {self}: {self.target} is not a VLABackbone subclass')
        return found


def parse_dtype(dtype: str, device: str):
    """The torch dtype named `dtype`; half precision only on CUDA."""
    import torch
    if dtype not in DTYPES:
        raise ValueError(f'dtype must be one of {DTYPES}, got {dtype!r}')
    if dtype != 'float32' and torch.device(device).type != 'cuda':
        raise ValueError(f'dtype {dtype} needs a CUDA device; on {device} use float32')
    return getattr(torch, dtype)


def load_backbone(spec: 'str | Path | BackboneSpec', device: str = 'cpu', dtype: str = 'float32'):
    """The frozen VLABackbone that `spec` names, on `device`, computing in `dtype` ('float32';
    'bfloat16' or 'float16' on CUDA)."""
    spec = BackboneSpec.parse(spec)
    torch_dtype = parse_dtype(dtype, device)
    cls = spec.backbone_class()
    if spec.kind == 'pi0':
        backbone = cls.from_pretrained(spec.path)
    elif spec.path is not None:
        backbone = cls.load(spec.path)
    else:
        backbone = cls()
    backbone = backbone.to(device)
    if dtype != 'float32':
        backbone = backbone.to_dtype(torch_dtype)
    return backbone.freeze()


def proprio_stats(spec: 'str | Path | BackboneSpec') -> tuple[list[float], list[float]]:
    """Mean and std of the proprioception as the backbone of `spec` normalises it, read from its folder
    without building the model (pi0: the state stats of its settings)."""
    spec = BackboneSpec.parse(spec)
    if spec.kind == 'pi0':
        from rlt_core.models.vla.pi0_settings import state_stats
        return state_stats(spec.path)
    return spec.backbone_class().proprio_stats(spec.path)


def check_backbone(backbone, profile: RobotProfile, spec='') -> None:
    """Raise ProfileError, naming both sides, unless `backbone` can drive the robot of `profile`: chunks of
    at least H = vla_chunk_len actions of the profile's action dimension, proprio of 2 x joints (positions, then
    velocities), cameras the profile has, and (where the backbone needs one) the profile's image size."""
    problems = []
    if backbone.chunk_len < profile.vla_chunk_len:
        problems.append(f'chunks of {backbone.chunk_len} actions < vla_chunk_len H={profile.vla_chunk_len}')
    if backbone.action_dim != profile.action_dim:
        problems.append(f'action_dim {backbone.action_dim} != {profile.action_dim} ({profile.action_space})')
    if backbone.proprio_dim != profile.proprio_dim:
        problems.append(f'proprio_dim {backbone.proprio_dim} != 2 x {len(profile.joint_names)} joints')
    missing = [c for c in backbone.camera_names if c not in profile.camera_names]
    if missing:
        problems.append(f'cameras {missing} not among the profile\'s {list(profile.camera_names)}')
    if backbone.image_shape is not None:
        wrong = [f'{c.name} {c.height}x{c.width}' for c in profile.cameras
                 if c.name in backbone.camera_names and (c.height, c.width) != tuple(backbone.image_shape)]
        if wrong:
            problems.append(f'images of {backbone.image_shape[0]}x{backbone.image_shape[1]} px, the profile '
                            f'has {", ".join(wrong)}')
    if problems:
        name = f'{type(backbone).__name__}' + (f' ({spec})' if str(spec) else '')
        raise ProfileError(f'VLA backbone {name} does not fit robot profile {profile.name!r} ({profile.hash}): '
                           + '; '.join(problems))
