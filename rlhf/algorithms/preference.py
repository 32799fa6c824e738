"""Preference losses: DPO and its variants, and the Bradley-Terry reward-model loss.
Inputs are summed log-probabilities of whole responses (one number per pair)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf.algorithms.choices import check_choice

DPO_LOSS_TYPES = ("sigmoid", "ipo")


def dpo_loss(policy_chosen_logps_B, policy_rejected_logps_B, ref_chosen_logps_B, ref_rejected_logps_B, *,
             beta=0.1, loss_type="sigmoid", label_smoothing=0.0, reference_free=False):
    """With h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l)), mean over pairs of
        sigmoid: -(1 - eps) log sigma(beta h) - eps log sigma(-beta h)
                 (DPO, Rafailov et al. 2023, eq. 7; eps = label_smoothing > 0 is conservative
                 DPO, for preference labels flipped with probability eps)
        ipo:     (h - 1/(2 beta))^2   (IPO, Azar et al. 2023, eq. 17: regresses the margin to a
                 finite target instead of pushing it to infinity on deterministic preferences).
    reference_free: log pi_ref = 0 (the ref inputs are ignored and may be None).
    Metrics: rewards_chosen / rewards_rejected (means of the implicit rewards
    beta (log pi - log pi_ref)), rewards_accuracy (chosen > rejected), rewards_margin."""
    check_choice("DPO loss type", loss_type, DPO_LOSS_TYPES)
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta!r}")
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing!r}")
    if label_smoothing and loss_type != "sigmoid":
        raise ValueError("label_smoothing applies to loss_type='sigmoid' only")
    if reference_free:
        chosen_B, rejected_B = policy_chosen_logps_B, policy_rejected_logps_B
    else:
        if ref_chosen_logps_B is None or ref_rejected_logps_B is None:
            raise ValueError("dpo_loss needs reference log-probs unless reference_free=True")
        chosen_B = policy_chosen_logps_B - ref_chosen_logps_B.detach()
        rejected_B = policy_rejected_logps_B - ref_rejected_logps_B.detach()
    h_B = chosen_B - rejected_B
    if loss_type == "sigmoid":
        losses_B = -(1 - label_smoothing) * F.logsigmoid(beta * h_B) - label_smoothing * F.logsigmoid(-beta * h_B)
    else:
        losses_B = (h_B - 1 / (2 * beta)) ** 2
    with torch.no_grad():
        r_w_B, r_l_B = beta * chosen_B.float(), beta * rejected_B.float()
        values = torch.stack([r_w_B.mean(), r_l_B.mean(), (r_w_B > r_l_B).float().mean(),
                              (r_w_B - r_l_B).mean()]).tolist()
    return losses_B.mean(), dict(zip(("rewards_chosen", "rewards_rejected", "rewards_accuracy", "rewards_margin"),
                                     values))


def bradley_terry_loss(chosen_rewards_B, rejected_rewards_B, margin_B=None):
    """Reward-model loss: mean of -log sigma(r_w - r_l - m) (Bradley & Terry 1952; Ouyang et
    al. 2022, eq. 1; the margin m of how strongly the pair was preferred from Llama 2, Touvron
    et al. 2023, eq. 2). Metrics: accuracy (r_w > r_l), margin (mean r_w - r_l)."""
    diff_B = chosen_rewards_B - rejected_rewards_B
    logits_B = diff_B if margin_B is None else diff_B - margin_B
    loss = -F.logsigmoid(logits_B).mean()
    with torch.no_grad():
        values = torch.stack([(diff_B > 0).float().mean(), diff_B.float().mean()]).tolist()
    return loss, dict(zip(("accuracy", "margin"), values))
