"""When the asynchronous learner may update: the update-to-data ratio as a budget."""


def updates_allowed(num_updates: int, num_transitions: int, utd_ratio: float, min_transitions: int) -> int:
    """How many more updates keep num_updates <= utd_ratio * num_transitions (0 before the minimum)."""
    if num_transitions < max(1, min_transitions):
        return 0
    return max(0, int(utd_ratio * num_transitions) - num_updates)
