"""Kinematics of an arm from its URDF: forward kinematics and differential inverse kinematics.

`ArmKinematics` reads the robot description (the URDF string robot_state_publisher serves as
`robot_description`, or a file) with Pinocchio and answers, for the profile's joints in the profile's
order:

- `fk(q)`: the tool frame's pose in the base frame (a 4x4 homogeneous matrix);
- `step(q, delta, dt)`: the joint target that moves the tool by one end-effector delta;
- `solve_chunk(q, chunk, dt)`: C joint-position points for an end-effector chunk (C x 6, or C x 7 with a
  gripper column), step by step from the measured configuration.

End-effector deltas are `[dx, dy, dz, rx, ry, rz]`: a translation of the tool frame's origin (m) and a
rotation vector (axis times angle, rad), both expressed in the base frame; the rotation is applied on the
left of the tool's orientation (R' = exp([r]) R), so it turns the tool about its own origin, around an
axis fixed in the base frame.

The inverse kinematics is damped least squares (Levenberg-Marquardt) on Pinocchio's frame Jacobian,
iterated a few times towards the target pose: dq = J^T (J J^T + damping^2 I)^-1 e, with e the 6-D pose
error (position, then the rotation vector log(R* R^T)). Every iterate is clipped to the joint position
limits and to the per-step velocity bound |q - q_measured| <= velocity_limit * dt. A target the arm cannot
reach in one step within those bounds is refused: the result's `ok` is False and `reason` says why (one of
`REASONS`, with a sentence); the caller holds the arm. Nothing is raised for an unreachable target; a
malformed description, frame or input raises `KinematicsError`.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

REASONS = ('workspace', 'joint_limit', 'velocity_limit', 'singular', 'residual')
"""Why a target is refused: outside the Cartesian workspace box; a joint would pass its position limit; a
joint would move faster than its velocity limit (a jump); the Jacobian is (near) singular there; the pose
error stays above the tolerance for another reason."""


class KinematicsError(ValueError):
    """A robot description, frame, joint or input the kinematics cannot work with."""


@dataclass(frozen=True)
class IKResult:
    """One differential IK step: the joint target, or a refusal with its reason (then hold the arm)."""

    ok: bool
    """True when `q` reaches the target pose within the tolerance and every bound."""
    q: np.ndarray
    """The joint target (profile order); the measured configuration when refused."""
    reason: str = ''
    """'' when ok, else one of REASONS."""
    detail: str = ''
    """A sentence for the log."""
    position_error: float = 0.0
    """Distance (m) between the target position and the position that `q` reaches (before refusal: the
    best iterate's)."""
    rotation_error: float = 0.0
    """Angle (rad) between the target orientation and the orientation that `q` reaches."""


@dataclass(frozen=True)
class ChunkResult:
    """An end-effector chunk as joint-position points, or the refusal of the whole chunk."""

    ok: bool
    points: np.ndarray
    """(C, n_joints) joint targets, one per control step; empty (0, n_joints) when refused."""
    gripper: np.ndarray | None = None
    """The chunk's gripper column (C,), passed through unchanged; None without one."""
    reason: str = ''
    """'' when ok, else the failing step's reason (one of REASONS)."""
    detail: str = ''
    failed_step: int = -1
    """Index of the first step refused, -1 when ok."""


class ArmKinematics:
    """Forward and differential inverse kinematics of `joint_names` between `base_frame` and `tool_frame`.

    `urdf` is the description's XML text. Joints of the description not in `joint_names` (fixed joints,
    gripper fingers) stay at their neutral positions. Position limits are the description's unless `lower` /
    `upper` narrow them (they must lie within the description's); velocity limits are the description's.
    `workspace` is an optional box ((x, y, z) lower, (x, y, z) upper) in the base frame that every target
    position must lie in.
    """

    def __init__(self, urdf: str, joint_names, base_frame: str, tool_frame: str, *, lower=None, upper=None,
                 workspace=None, damping: float = 0.01, position_tolerance: float = 1e-4,
                 rotation_tolerance: float = np.radians(0.1), max_iterations: int = 20,
                 singular_value: float = 0.01):
        import pinocchio as pin
        self._pin = pin
        try:
            self.model = pin.buildModelFromXML(urdf)
        except (RuntimeError, ValueError) as err:
            raise KinematicsError(f'cannot read the robot description: {err}') from None
        self.data = self.model.createData()
        self.joint_names = tuple(joint_names)
        self.base_frame, self.tool_frame = base_frame, tool_frame
        self.damping = float(damping)
        self.position_tolerance = float(position_tolerance)
        self.rotation_tolerance = float(rotation_tolerance)
        self.max_iterations = int(max_iterations)
        self.singular_value = float(singular_value)

        self._q_index, self._v_index = [], []
        for name in self.joint_names:
            if not self.model.existJointName(name):
                raise KinematicsError(f'joint {name!r} is not in the robot description '
                                      f'(joints: {list(self.model.names)[1:]})')
            joint = self.model.joints[self.model.getJointId(name)]
            if joint.nq != 1 or joint.nv != 1:
                raise KinematicsError(f'joint {name!r} is not a revolute or prismatic joint with limits '
                                      f'(nq={joint.nq}); a continuous joint needs limits here')
            self._q_index.append(joint.idx_q)
            self._v_index.append(joint.idx_v)
        self._q_index, self._v_index = np.array(self._q_index), np.array(self._v_index)
        self._base_id, self._tool_id = self._frame_id(base_frame), self._frame_id(tool_frame)
        if self.model.frames[self._base_id].parentJoint != 0:
            raise KinematicsError(f'base frame {base_frame!r} moves with joint '
                                  f'{self.model.names[self.model.frames[self._base_id].parentJoint]!r}; '
                                  'it must be fixed to the world')

        self.urdf_lower = self.model.lowerPositionLimit[self._q_index].copy()
        self.urdf_upper = self.model.upperPositionLimit[self._q_index].copy()
        self.lower = self.urdf_lower if lower is None else np.asarray(lower, dtype=np.float64)
        self.upper = self.urdf_upper if upper is None else np.asarray(upper, dtype=np.float64)
        outside = [n for n, lo, hi, ulo, uhi in zip(self.joint_names, self.lower, self.upper, self.urdf_lower,
                                                   self.urdf_upper, strict=True) if lo < ulo or hi > uhi]
        if outside:
            raise KinematicsError(f'joint limits of {outside} go beyond the robot description\'s')
        self.velocity_limit = self.model.velocityLimit[self._v_index].copy()
        """Largest speed of each joint (rad/s or m/s), from the description."""
        if not np.all(self.velocity_limit > 0):
            raise KinematicsError(f'every joint needs a positive velocity limit in the description, got '
                                  f'{dict(zip(self.joint_names, self.velocity_limit.tolist(), strict=True))}')
        self.workspace = None
        if workspace is not None:
            lo, hi = (np.asarray(b, dtype=np.float64) for b in workspace)
            if lo.shape != (3,) or hi.shape != (3,) or np.any(lo >= hi):
                raise KinematicsError(f'workspace needs (x, y, z) lower < upper, got {workspace}')
            self.workspace = (lo, hi)
        self._neutral = pin.neutral(self.model)

    @classmethod
    def from_file(cls, path, joint_names, base_frame: str, tool_frame: str, **kwargs) -> 'ArmKinematics':
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise KinematicsError(f'cannot read robot description {path}: {err}') from None
        return cls(text, joint_names, base_frame, tool_frame, **kwargs)

    def _frame_id(self, name: str) -> int:
        if not self.model.existFrame(name):
            raise KinematicsError(f'frame {name!r} is not in the robot description '
                                  f'(frames: {[f.name for f in self.model.frames][1:]})')
        return self.model.getFrameId(name)

    # --- forward kinematics ---

    def _full(self, q) -> np.ndarray:
        full = self._neutral.copy()
        full[self._q_index] = q
        return full

    def _check_q(self, q) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (len(self.joint_names),) or not np.all(np.isfinite(q)):
            raise KinematicsError(f'a configuration needs {len(self.joint_names)} finite joint positions, '
                                  f'got shape {q.shape}')
        return q

    def _pose_and_jacobian(self, q, jacobian: bool):
        """Tool pose in the base frame (p, R) and, if asked, the 6 x n Jacobian of [velocity; angular velocity]
        of the tool's origin, both in base-frame axes."""
        pin = self._pin
        full = self._full(q)
        pin.framesForwardKinematics(self.model, self.data, full)
        base, tool = self.data.oMf[self._base_id], self.data.oMf[self._tool_id]
        rot_base_t = base.rotation.T
        p = rot_base_t @ (tool.translation - base.translation)
        rot = rot_base_t @ tool.rotation
        if not jacobian:
            return p, rot, None
        jac = pin.computeFrameJacobian(self.model, self.data, full, self._tool_id, pin.LOCAL_WORLD_ALIGNED)
        jac = jac[:, self._v_index]
        jac = np.vstack([rot_base_t @ jac[:3], rot_base_t @ jac[3:]])
        return p, rot, jac

    def fk(self, q) -> np.ndarray:
        """The tool frame's pose in the base frame at joint positions `q` (profile order): a 4x4 matrix."""
        p, rot, _ = self._pose_and_jacobian(self._check_q(q), jacobian=False)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rot, p
        return pose

    def pose_error(self, target: np.ndarray, position, rotation) -> np.ndarray:
        """[position offset (m), rotation vector (rad)], both in the base frame, from the tool pose (`position`,
        `rotation`) to `target` (4x4)."""
        return np.concatenate([target[:3, 3] - position, self._pin.log3(target[:3, :3] @ rotation.T)])

    def tool_positions(self, configurations) -> np.ndarray:
        """(N, 3) positions of the tool frame's origin in the base frame at N configurations (N, n_joints)."""
        return np.array([self.fk(q)[:3, 3] for q in np.atleast_2d(configurations)])

    def jacobian(self, q) -> np.ndarray:
        """6 x n: [linear; angular] velocity of the tool frame's origin per joint speed, in base-frame axes."""
        return self._pose_and_jacobian(self._check_q(q), jacobian=True)[2]

    def apply_delta(self, pose: np.ndarray, delta) -> np.ndarray:
        """The pose moved by one end-effector delta [dx, dy, dz, rx, ry, rz] (base frame; R' = exp(r) R)."""
        delta = np.asarray(delta, dtype=np.float64)
        target = np.array(pose, dtype=np.float64)
        target[:3, 3] = pose[:3, 3] + delta[:3]
        target[:3, :3] = self._pin.exp3(delta[3:6]) @ pose[:3, :3]
        return target

    # --- inverse kinematics ---

    def step(self, q, delta, dt: float) -> IKResult:
        """The joint target (reached within `dt` s) that moves the tool by `delta` = [dx, dy, dz, rx, ry, rz]
        from where it is at the measured `q`; refused with a reason when unreachable."""
        q = self._check_q(q)
        delta = np.asarray(delta, dtype=np.float64)
        if delta.shape != (6,) or not np.all(np.isfinite(delta)):
            raise KinematicsError(f'an end-effector delta needs 6 finite entries, got shape {delta.shape}')
        return self.solve(q, self.apply_delta(self.fk(q), delta), dt)

    def solve(self, q, target: np.ndarray, dt: float) -> IKResult:
        """The joint target nearest `q` whose tool pose is `target` (4x4, base frame), within one step of `dt`
        seconds at the joints' velocity limits and within their position limits; refused with a reason when
        there is none."""
        q0 = self._check_q(q)
        if not dt > 0:
            raise KinematicsError(f'dt must be positive, got {dt}')
        target = np.asarray(target, dtype=np.float64)
        if self.workspace is not None:
            lo, hi = self.workspace
            if np.any(target[:3, 3] < lo) or np.any(target[:3, 3] > hi):
                return self._refuse(q0, 'workspace', f'target position {np.round(target[:3, 3], 4).tolist()} m is '
                                    f'outside the workspace box {lo.tolist()} .. {hi.tolist()}')
        reach = self.velocity_limit * dt
        # Never push a joint further out of its range than it already is (a measured position may sit just past it).
        pos_lo, pos_hi = np.minimum(self.lower, q0), np.maximum(self.upper, q0)
        lo, hi = np.maximum(pos_lo, q0 - reach), np.minimum(pos_hi, q0 + reach)
        lam2 = self.damping ** 2
        qk = q0.copy()
        p_err = r_err = np.inf
        clipped_position, clipped_velocity = np.zeros(len(q0), bool), np.zeros(len(q0), bool)
        for _ in range(self.max_iterations):
            p, rot, jac = self._pose_and_jacobian(qk, jacobian=True)
            error = self.pose_error(target, p, rot)
            p_err, r_err = float(np.linalg.norm(error[:3])), float(np.linalg.norm(error[3:]))
            if p_err < 1e-3 * self.position_tolerance and r_err < 1e-3 * self.rotation_tolerance:
                break
            dq = jac.T @ np.linalg.solve(jac @ jac.T + lam2 * np.eye(6), error)
            free = qk + dq
            qk = np.clip(free, lo, hi)
            clipped_position |= (free < pos_lo) | (free > pos_hi)
            clipped_velocity |= ((free < q0 - reach) | (free > q0 + reach)) & (qk != free)
        else:
            p, rot, _ = self._pose_and_jacobian(qk, jacobian=False)
            error = self.pose_error(target, p, rot)
            p_err, r_err = float(np.linalg.norm(error[:3])), float(np.linalg.norm(error[3:]))
        if p_err <= self.position_tolerance and r_err <= self.rotation_tolerance:
            return IKResult(ok=True, q=qk, position_error=p_err, rotation_error=r_err)

        errors = f'(position error {p_err * 1e3:.3f} mm, rotation error {np.degrees(r_err):.3f} deg)'
        sigma = np.linalg.svd(self.jacobian(q0), compute_uv=False)[-1]
        if sigma < self.singular_value:
            reason, text = 'singular', (f'the arm is near a singular configuration (smallest singular value of '
                                        f'the Jacobian {sigma:.2e} < {self.singular_value:g}): the target would '
                                        'need a jump')
        elif clipped_position.any():
            reason, text = 'joint_limit', f'joints {self._names(clipped_position)} would pass their position limits'
        elif clipped_velocity.any():
            reason, text = 'velocity_limit', (f'joints {self._names(clipped_velocity)} would move faster than their '
                                              f'velocity limits in {dt:g} s (a jump)')
        else:
            reason, text = 'residual', 'the target is out of reach: the pose error stays above the tolerance'
        return self._refuse(q0, reason, f'{text} {errors}', p_err, r_err)

    def _names(self, mask) -> list[str]:
        return [n for n, m in zip(self.joint_names, mask, strict=True) if m]

    @staticmethod
    def _refuse(q, reason, detail, p_err=0.0, r_err=0.0) -> IKResult:
        return IKResult(ok=False, q=q.copy(), reason=reason, detail=detail, position_error=p_err, rotation_error=r_err)

    def solve_chunk(self, q, chunk, dt: float) -> ChunkResult:
        """C joint-position points for an end-effector chunk (C x 6, or C x 7: the last column a gripper command,
        passed through), one per control step of `dt` s, from the measured `q`. Step k's target is the pose
        of step k-1's target moved by delta k (targets chain from the measured pose, so the IK's residuals do
        not add up); each step starts from the previous step's joint target. If any step is refused, the
        whole chunk is."""
        q = self._check_q(q)
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or chunk.shape[1] not in (6, 7) or len(chunk) == 0 or not np.all(np.isfinite(chunk)):
            raise KinematicsError(f'an end-effector chunk needs shape (C, 6) or (C, 7) of finite values, '
                                  f'got {chunk.shape}')
        gripper = chunk[:, 6].copy() if chunk.shape[1] == 7 else None
        pose, qk, points = self.fk(q), q, []
        for k, delta in enumerate(chunk[:, :6]):
            pose = self.apply_delta(pose, delta)
            result = self.solve(qk, pose, dt)
            if not result.ok:
                return ChunkResult(ok=False, points=np.zeros((0, len(q))), gripper=gripper, reason=result.reason,
                                   detail=f'step {k}: {result.detail}', failed_step=k)
            qk = result.q
            points.append(qk)
        return ChunkResult(ok=True, points=np.array(points), gripper=gripper)
