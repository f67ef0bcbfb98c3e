"""The weather conditions, in the router's class order. No heavy imports: shared by every layer."""

CONDITIONS: tuple[str, ...] = ("clean", "rain", "haze", "raindrop", "snow")
RESTORED_CONDITIONS: tuple[str, ...] = CONDITIONS[1:]


def condition_index(name: str) -> int:
    """Index of a condition name in the router's output, with a one-line error for unknown names."""
    try:
        return CONDITIONS.index(name)
    except ValueError:
        raise ValueError(f"unknown condition {name!r}; expected one of {', '.join(CONDITIONS)}") from None
