"""Preference losses: DPO and its variants, and the Bradley-Terry reward-model loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

DPO_LOSS_TYPES = ("sigmoid", "ipo")


def dpo_loss(policy_chosen_logps_B, policy_rejected_logps_B, ref_chosen_logps_B, ref_rejected_logps_B, *,
             beta=0.1, loss_type="sigmoid", label_smoothing=0.0, reference_free=False):
    """h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l)).
    sigmoid: -log sigma(beta h) (Rafailov et al. 2023, eq. 7); with label smoothing eps,
    -(1 - eps) log sigma(beta h) - eps log sigma(-beta h) (conservative DPO).
    ipo: (h - 1 / (2 beta))^2 (Azar et al. 2023, eq. 17). reference_free: log pi_ref = 0."""
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"unknown DPO loss type {loss_type!r}; valid: {', '.join(DPO_LOSS_TYPES)}")
    ref_w = torch.zeros_like(ref_chosen_logps_B) if reference_free else ref_chosen_logps_B
    ref_l = torch.zeros_like(ref_rejected_logps_B) if reference_free else ref_rejected_logps_B
    chosen = policy_chosen_logps_B - ref_w
    rejected = policy_rejected_logps_B - ref_l
    h = chosen - rejected
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    else:
        losses = (h - 1 / (2 * beta)) ** 2
    with torch.no_grad():
        r_w, r_l = beta * chosen, beta * rejected
        metrics = {"rewards_chosen": float(r_w.mean()), "rewards_rejected": float(r_l.mean()),
                   "rewards_accuracy": float((r_w > r_l).float().mean()), "rewards_margin": float((r_w - r_l).mean())}
    return losses.mean(), metrics


def bradley_terry_loss(chosen_rewards_B, rejected_rewards_B, margin_B=None):
    """-log sigma(r_w - r_l - m) (Bradley-Terry; margin m as in Llama 2, eq. 2)."""
    diff = chosen_rewards_B - rejected_rewards_B
    if margin_B is not None:
        diff = diff - margin_B
    loss = -F.logsigmoid(diff).mean()
    with torch.no_grad():
        metrics = {"accuracy": float((chosen_rewards_B > rejected_rewards_B).float().mean()),
                   "margin": float((chosen_rewards_B - rejected_rewards_B).mean())}
    return loss, metrics
