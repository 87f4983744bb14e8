"""Bias detection: does the explainer reveal a confounded classifier?

A classifier trained where the target (Smiling) goes with a confounder (glasses) may use the
confounder. Its explainer then changes the confounder along the strip; the explainer of an
unbiased classifier does not. The factor oracle measures the confounder on every frame:

- drift curve, (S,): mean |g(x_s) - g(x)| per step, g the oracle's confounder output;
- drift: mean |g(x_last) - g(x_first)|, how much the whole strip changes the confounder;
- signed change: mean g(x_last) - g(x_first), > 0 when exaggerating the target adds it.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cfgen.errors import ConfigError
from cfgen.evaluate.preservation import predict
from cfgen.explain.strip import Strip

Oracle = Callable[[torch.Tensor], torch.Tensor]

# A drift counts as a finding when it is both large and well above the unbiased classifier's.
MIN_DRIFT_GAP = 0.1
MIN_DRIFT_RATIO = 2.0


@dataclass
class BiasConfig:
    """The bias experiment of `cfgen evaluate`.

    biased_explainer: the PE bundle trained on the confounded classifier (None skips the
    experiment); unbiased_explainer: default the suite's main explainer; confounder: the
    oracle factor to follow.
    """

    biased_explainer: str | None = None
    unbiased_explainer: str | None = None
    confounder: str = "glasses"


def confounder_drift(
    strip: Strip, queries: torch.Tensor, oracle: Oracle, index: int, batch_size: int = 256
) -> dict:
    """Drift curve (S,), drift and signed change of oracle factor `index` along `strip`.

    queries: (N, C, H, W), the images the strip was made from.
    """
    frames = predict(oracle, strip.images, batch_size)[..., index].float()  # (S, N)
    query = predict(oracle, queries, batch_size)[:, index].float()  # (N,)
    change = frames[-1] - frames[0]
    return {
        "curve": (frames - query).abs().mean(dim=1).tolist(),
        "drift": change.abs().mean().item(),
        "signed_change": change.mean().item(),
    }


def bias_finding(biased: dict, unbiased: dict, confounder: str) -> tuple[bool, str]:
    """Whether the biased classifier's strips change the confounder, and a sentence saying so."""
    gap = biased["drift"] - unbiased["drift"]
    detected = gap >= MIN_DRIFT_GAP and biased["drift"] >= MIN_DRIFT_RATIO * unbiased["drift"]
    figures = f"drift {biased['drift']:.2f} vs {unbiased['drift']:.2f}"
    if not detected:
        return False, (
            f"no bias found: the biased classifier's strips change {confounder} about as "
            f"little as the unbiased one's ({figures})"
        )
    verb = "add" if biased["signed_change"] > 0 else "remove"
    return True, (
        f"the biased classifier's strips {verb} {confounder}: {figures} for the unbiased "
        f"classifier, so the biased classifier relies on {confounder}"
    )


JUDGED = {"oracle_flip": "the oracle's reading of the target", "judge_flip_rate": "the judge"}


def judged_sentence(biased: dict, unbiased: dict) -> str:
    """How the independent judges follow each explainer's strips, as a clause of the finding
    ("" when neither an oracle reading nor a judge scored them)."""
    clauses = [
        f"{label} flips on {biased[key]:.0%} of the biased classifier's strips "
        f"({unbiased[key]:.0%} of the unbiased one's)"
        for key, label in JUDGED.items()
        if key in biased and key in unbiased
    ]
    return "; " + ", ".join(clauses) if clauses else ""


def bias_experiment(
    biased: Strip,
    unbiased: Strip,
    queries: torch.Tensor,
    oracle: Oracle,
    factor_names: list[str],
    confounder: str = "glasses",
) -> dict:
    """Confounder drift along the strips of the biased and the unbiased explainer, and the finding.

    biased / unbiased: strips of the same `queries` (N, C, H, W) by the two explainers.
    """
    if confounder not in factor_names:
        raise ConfigError(
            f"bias.confounder {confounder!r} is not an oracle factor; choose one of {factor_names}"
        )
    index = factor_names.index(confounder)
    drift_biased = confounder_drift(biased, queries, oracle, index)
    drift_unbiased = confounder_drift(unbiased, queries, oracle, index)
    detected, finding = bias_finding(drift_biased, drift_unbiased, confounder)
    return {
        "confounder": confounder,
        "biased": drift_biased,
        "unbiased": drift_unbiased,
        "detected": detected,
        "finding": finding,
    }
