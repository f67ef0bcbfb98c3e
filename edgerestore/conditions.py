"""The weather conditions, in the router's class order. No heavy imports: shared by every layer."""

CONDITIONS: tuple[str, ...] = ("clean", "rain", "haze", "raindrop", "snow")
RESTORED_CONDITIONS: tuple[str, ...] = CONDITIONS[1:]


def condition_index(name: str) -> int:
    """Index of a condition name in the router's output, with a one-line error for unknown names."""
    try:
        return CONDITIONS.index(name)
    except ValueError:
        raise ValueError(f"unknown condition {name!r}; expected one of {', '.join(CONDITIONS)}") from None


def calibrated(probs, temperature: float = 1.0):
    """The router's probabilities at `temperature` (temperature scaling, Guo et al. 2017): softmax(z / T)
    computed from softmax(z) as p^(1/T), renormalised. numpy in, numpy out; T = 1 returns `probs`."""
    import numpy as np

    p = np.asarray(probs, dtype=np.float64)
    if temperature == 1.0:
        return p
    logp = np.log(np.maximum(p, 1e-30)) / float(temperature)
    logp -= logp.max(axis=-1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(axis=-1, keepdims=True)


def acts_on(probs, threshold: float = 0.0) -> bool:
    """Do no harm: whether a frame with (calibrated) router `probs` is restored — its verdict is a weather
    condition and the router is at least `threshold` sure of it. Otherwise it passes through untouched."""
    import numpy as np

    k = int(np.argmax(probs))
    return k != 0 and float(probs[k]) >= threshold


def check_threshold(value: float, what: str) -> float:
    """`value` as a do-no-harm threshold (a probability in [0, 1)); else a one-line `UserError` that starts
    with `what` (the caller's name for it: an option, an argument)."""
    from edgerestore.errors import UserError

    if not 0.0 <= value < 1.0:
        raise UserError(f"{what}: give a probability in [0, 1) (0: act on every verdict)")
    return float(value)
