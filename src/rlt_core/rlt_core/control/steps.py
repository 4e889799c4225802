"""Which joint states are control steps, when the driver publishes faster than the control rate.

A ros2_control robot's joint_state_broadcaster publishes at the controller manager's rate (typically 100-500 Hz);
the robot profile's `control_hz` is the rate of control steps (one trajectory point, one action, one recorded
frame per step). `ControlSteps` picks the joint states that are control steps from their stamps alone, so that
every node that reads the same joint states (the arbiter, ingestion, the actor, the recorder) picks the same ones.

Steps follow a fixed grid of lines, the multiples of the control period on the stamps' clock. Each line is served
by at most one joint state, stamped from half a period before it to one and a half periods after it (its window
and the next line's). A joint state stamped after the last step is the next step when it can serve a line after
the last step's: it serves the earliest such line, older lines being skipped (after a gap in the stream, steps
resume from the line before the current one instead of catching up from where they stopped). Hence:

- a driver at the control rate yields every joint state as a step, with any jitter or lateness below a period
  (a late joint state followed by a punctual one: two steps), from its first joint state on;
- a faster driver yields one step per period on average, the first joint state from half a period before each
  line: every 5th at five times the control rate, alternately every 2nd and 3rd at two and a half times;
- the lines do not depend on which joint states a node saw: a node that lost a joint state steps on the next one
  instead and agrees with the others again from the next line. After a gap of more than half a period (a node
  starting, a driver pausing) a faster driver's steps come closer together for a moment, at most two more than
  the periods passed, until they reach the current line: a node that starts later agrees with the others from
  then on.

A stamp at or before the last step's is never a step (duplicates, out-of-order arrivals).
"""


class ControlSteps:
    def __init__(self, control_hz: float):
        if not control_hz > 0:
            raise ValueError(f'control_hz must be > 0, got {control_hz}')
        self.period_ns = round(1e9 / control_hz)
        self.line: int | None = None
        """The grid line (a multiple of the period) the last step served."""
        self.stamp_ns: int | None = None
        """The last step's stamp."""

    def admit(self, stamp_ns: int) -> bool:
        """Whether the joint state stamped `stamp_ns` is a control step (it then counts as the last one)."""
        stamp_ns = int(stamp_ns)
        if self.stamp_ns is not None and stamp_ns <= self.stamp_ns:
            return False
        half = self.period_ns // 2
        oldest = (stamp_ns - half) // self.period_ns  # the oldest line whose window (and the next's) holds it
        line = oldest if self.line is None else max(self.line + 1, oldest)
        if stamp_ns < line * self.period_ns - half:
            return False
        self.line, self.stamp_ns = line, stamp_ns
        return True
