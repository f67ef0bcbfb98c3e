"""The do-no-harm trade-off of a calibrated router as a picture: per condition, the share of validation frames
restored by the right branch and the share passed through untouched as the confidence threshold rises, with
the clean frames left alone and the chosen threshold marked. matplotlib only (the `train` extra)."""

from __future__ import annotations

from pathlib import Path


def plot_router_tradeoff(calibration: dict, path: str | Path, title: str = "") -> Path:
    """Write the trade-off of `calibration` (`router_stage.calibrate_router`'s record) as a PNG at `path`."""
    from edgerestore.measure.plots import pyplot, save_figure

    plt = pyplot()
    curve = calibration["curve"]
    taus = curve["threshold"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, values in curve.items():
        if name in ("threshold", "clean"):
            continue
        (line,) = left.plot(taus, values["restored_right"], label=f"{name}: restored by its branch")
        left.plot(
            taus, values["passed_through"], "--", color=line.get_color(), label=f"{name}: passed through"
        )
        right.plot(values["passed_through"], values["restored_right"], color=line.get_color(), label=name)
    if "clean" in curve:
        left.plot(taus, curve["clean"]["untouched"], "k-", lw=2, label="clean: left alone")
    for ax in (left,):
        ax.axvline(calibration["threshold"], color="grey", lw=1)
        ax.set_xlabel("confidence threshold (calibrated probability)")
        ax.set_ylabel("share of validation frames")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="lower left")
    right.set_xlabel("weather frames passed through untouched")
    right.set_ylabel("weather frames restored by the right branch")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1.02)
    right.legend(fontsize=8)
    right.set_title("accuracy vs. frames passed through", fontsize=10)
    left.set_title(
        f"T = {calibration['temperature']:.2f}, threshold {calibration['threshold']:.2f}: clean left alone "
        f"{calibration['clean_untouched']:.1%} ({calibration['samples']} frames)",
        fontsize=10,
    )
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
