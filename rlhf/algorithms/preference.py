"""Preference losses: DPO and its variants (IPO, conservative DPO, SimPO), ORPO, KTO, and the
Bradley-Terry reward-model loss. Inputs are log-probabilities of whole responses: summed
(`*_logps_B`) or averaged over the response's tokens (`*_avg_logps_B`), one number per example."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf.algorithms.choices import check_choice

DPO_LOSS_TYPES = ("sigmoid", "ipo")
PAIR_LOSS_TYPES = DPO_LOSS_TYPES + ("simpo", "orpo")  # what a pairwise policy step can minimise
REFERENCE_FREE = ("simpo", "orpo")


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


def simpo_loss(chosen_avg_logps_B, rejected_avg_logps_B, *, beta=2.0, gamma=1.0):
    """SimPO (Meng et al. 2024, eq. 6): mean over pairs of
        -log sigma(beta * avg log pi(y_w) - beta * avg log pi(y_l) - gamma),
    the length-normalised log-likelihood as the implicit reward (no reference model) and a
    target margin gamma. The paper's settings: beta 2.0-2.5, gamma / beta about 0.5.
    Metrics: rewards_chosen / rewards_rejected (beta * avg log pi), rewards_accuracy, rewards_margin."""
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta!r}")
    r_w_B, r_l_B = beta * chosen_avg_logps_B, beta * rejected_avg_logps_B
    loss = -F.logsigmoid(r_w_B - r_l_B - gamma).mean()
    return loss, _reward_metrics(r_w_B, r_l_B)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Maechler 2012); x is kept below 0."""
    x = x.clamp(max=-1e-7)
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_loss(chosen_avg_logps_B, rejected_avg_logps_B, *, lam=0.1):
    """ORPO (Hong et al. 2024, eqs. 2-7): supervised fine-tuning and preference alignment in one
    loss, no reference model. With P(y|x) = exp(avg log pi(y|x)) and odds(y|x) = P / (1 - P),
        L = mean over pairs of [ -avg log pi(y_w|x)  -  lam * log sigma(log odds(y_w|x) - log odds(y_l|x)) ],
    the first term the NLL of the chosen response (token mean), the second the odds-ratio term.
    Metrics: nll, or_loss, log_odds_ratio, log_odds_chosen / log_odds_rejected, rewards_accuracy
    (the chosen answer has the higher odds)."""
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam!r}")
    log_odds_w = chosen_avg_logps_B - _log1mexp(chosen_avg_logps_B)
    log_odds_l = rejected_avg_logps_B - _log1mexp(rejected_avg_logps_B)
    ratio_B = log_odds_w - log_odds_l
    nll, or_loss = -chosen_avg_logps_B.mean(), -F.logsigmoid(ratio_B).mean()
    with torch.no_grad():
        values = torch.stack([nll, or_loss, ratio_B.mean(), log_odds_w.mean(), log_odds_l.mean(),
                              (ratio_B > 0).float().mean()]).tolist()
    names = ("nll", "or_loss", "log_odds_ratio", "log_odds_chosen", "log_odds_rejected", "rewards_accuracy")
    return nll + lam * or_loss, dict(zip(names, values))


def pair_loss(loss_type: str, chosen_logps_B, rejected_logps_B, chosen_lengths_B, rejected_lengths_B,
              ref_chosen_logps_B=None, ref_rejected_logps_B=None, *, beta=0.1, label_smoothing=0.0,
              simpo_gamma=1.0, orpo_lambda=0.1):
    """The one place a pairwise policy step's loss is chosen: DPO / IPO on summed log-probs
    against the reference, SimPO and ORPO on length-normalised ones without it."""
    check_choice("pairwise loss type", loss_type, PAIR_LOSS_TYPES)
    if loss_type == "simpo":
        return simpo_loss(chosen_logps_B / chosen_lengths_B, rejected_logps_B / rejected_lengths_B, beta=beta,
                          gamma=simpo_gamma)
    if loss_type == "orpo":
        return orpo_loss(chosen_logps_B / chosen_lengths_B, rejected_logps_B / rejected_lengths_B, lam=orpo_lambda)
    return dpo_loss(chosen_logps_B, rejected_logps_B, ref_chosen_logps_B, ref_rejected_logps_B, beta=beta,
                    loss_type=loss_type, label_smoothing=label_smoothing)


def implicit_rewards(loss_type: str, logps_B, lengths_B, ref_logps_B=None, *, beta=0.1) -> torch.Tensor:
    """What each pairwise loss treats as the reward of a response (held-out margins and
    accuracies compare these): beta (log pi - log pi_ref) for DPO / IPO, beta * avg log pi for
    SimPO, the log odds of the average token probability for ORPO."""
    check_choice("pairwise loss type", loss_type, PAIR_LOSS_TYPES)
    if loss_type == "simpo":
        return beta * logps_B / lengths_B
    if loss_type == "orpo":
        avg_B = logps_B / lengths_B
        return avg_B - _log1mexp(avg_B)
    return beta * (logps_B - ref_logps_B)


def kto_loss(policy_logps_B, ref_logps_B, desirable_B, kl_policy_logps_B, kl_ref_logps_B, *, beta=0.1,
             lambda_d=1.0, lambda_u=1.0):
    """KTO (Ethayarajh et al. 2024, eq. 8) on unpaired examples, each desirable or not. With the
    implicit reward r = log pi(y|x) - log pi_ref(y|x) and the reference point
        z_0 = max(0, mean of log pi(y'|x) - log pi_ref(y'|x) over mismatched pairs (x, y')),
    an estimate of KL(pi || pi_ref) that is not differentiated (section 4.1),
        v = lambda_d * sigma(beta (r - z_0))   for a desirable y,
            lambda_u * sigma(beta (z_0 - r))   for an undesirable one,
        L = mean over examples of lambda_y - v.
    The paper recommends lambda_d n_d / (lambda_u n_u) in [1, 4/3]. Metrics: kl (z_0),
    rewards_desirable / rewards_undesirable (means of beta * r; 0 where a kind is absent)."""
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta!r}")
    desirable_B = desirable_B.bool()
    z0 = (kl_policy_logps_B - kl_ref_logps_B.detach()).mean().clamp(min=0).detach()
    r_B = policy_logps_B - ref_logps_B.detach()
    v_B = torch.where(desirable_B, lambda_d * torch.sigmoid(beta * (r_B - z0)),
                      lambda_u * torch.sigmoid(beta * (z0 - r_B)))
    lam_B = torch.where(desirable_B, torch.full_like(v_B, lambda_d), torch.full_like(v_B, lambda_u))
    loss = (lam_B - v_B).mean()
    with torch.no_grad():
        rewards = beta * r_B.float()
        mean_of = lambda m: float(rewards[m].mean()) if m.any() else 0.0  # noqa: E731
        metrics = {"kl": float(z0), "rewards_desirable": mean_of(desirable_B),
                   "rewards_undesirable": mean_of(~desirable_B)}
    return loss, metrics


def _reward_metrics(r_w_B, r_l_B) -> dict:
    with torch.no_grad():
        r_w_B, r_l_B = r_w_B.float(), r_l_B.float()
        values = torch.stack([r_w_B.mean(), r_l_B.mean(), (r_w_B > r_l_B).float().mean(),
                              (r_w_B - r_l_B).mean()]).tolist()
    return dict(zip(("rewards_chosen", "rewards_rejected", "rewards_accuracy", "rewards_margin"), values))
