"""Policy trainer role: RL (`rl_objective`), supervised (warm start, SFT), pairwise preference
(DPO, IPO, SimPO, ORPO) and KTO steps on a DeepSpeed rank, and the trainer's end of every
weight transport (`WeightSender`)."""

from __future__ import annotations

from typing import Optional

import torch

from rlhf.actors.deepspeed_rank import DeepSpeedRank
from rlhf.algorithms import PolicyLossSettings, rl_objective
from rlhf.algorithms.preference import kto_loss, pair_loss
from rlhf.metrics import combine_shards, mean_dicts
from rlhf.models import apply_lora, attention_backend, load_causal_lm
from rlhf.scoring import loss_token_logprobs, packed_response_logprobs, sequence_lengths, sequence_logps
from rlhf.packing import gather_rows, rl_micro_batches
from rlhf.quantization import load_quantized
from rlhf.sync.endpoints import WeightSender


class PolicyTrainer(WeightSender, DeepSpeedRank):
    """One data-parallel rank of the policy: a causal LM, LoRA-wrapped when `lora` is given."""

    def _load_model(self):
        if self.quantization:
            model = load_quantized(self.model_path, self.dtype, self.device, self.quantization,
                                   attention_backend(self.device))
        else:
            model = load_causal_lm(self.model_path, self.dtype, self.device)
        return apply_lora(model, **self.lora) if self.lora else model

    # ---- RL ----------------------------------------------------------------------------

    @torch.no_grad()
    def score(self, micro_batches: list[dict], temperature: float = 1.0) -> list[torch.Tensor]:
        """Log-probs [b, R] of each packed RL micro-batch (`rlhf.packing`) under the current policy
        (pi_old before an update); every rank gets the same number of micro-batches."""
        self.engine.eval()
        return [packed_response_logprobs(self.engine, mb, self.device, temperature).cpu() for mb in micro_batches]

    def logprobs(self, batch: dict, temperature: float = 1.0) -> torch.Tensor:
        """Log-probs [B, R] of a padded RL batch on this rank alone (packed by `optim.max_tokens`)."""
        micro_batches, plan = rl_micro_batches(batch, 1, self.optim.max_tokens, pad_id=0)
        return gather_rows([self.score(micro_batches[0], temperature)], plan, *batch["response_mask_BR"].shape)

    def train_rl(self, minibatches: list[list[dict]], counts: list[dict], loss: PolicyLossSettings) -> dict:
        """One optimizer step per mini-batch, given as this rank's packed micro-batches. `counts[i]`
        holds mini-batch i's global `num_tokens` / `num_seqs`, making the micro-batches' losses
        on every rank add up to the mini-batch's loss."""
        self.engine.train()
        steps = []
        for micro_batches, count in zip(minibatches, counts):
            grad_norm, metrics = self._accumulate(micro_batches, lambda mb: self._rl_micro_batch(mb, count, loss))
            steps.append(combine_shards(metrics) | {"actor/grad_norm": grad_norm,
                                                             "actor/lr": self.engine.get_lr()[0]})
        self.version += len(minibatches)
        out = mean_dicts(steps) | {"actor/skipped_steps": self._take_skips()}
        if self.device == "cuda":  # the update's peak, for memory comparisons (full, LoRA, QLoRA)
            out["memory/trainer_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            # a colocated engine wakes up next: give it the blocks the update's peak left cached
            torch.cuda.empty_cache()
        return out

    def _rl_micro_batch(self, mb: dict, count: dict, loss: PolicyLossSettings):
        mask = mb["response_mask_BR"].to(self.device)
        lp = packed_response_logprobs(self.engine, mb, self.device, loss.temperature)
        old = mb["old_logprobs_BR"].to(self.device) if "old_logprobs_BR" in mb else lp.detach()
        rollout = mb.get("rollout_logprobs_BR") if loss.rollout_is is not None else None
        rollout = rollout.to(self.device) if rollout is not None else None
        ref = mb["ref_logprobs_BR"].to(self.device) if loss.kl_coef > 0 else None
        value, metrics = rl_objective(lp, old, mb["advantages_BR"].to(self.device), mask, loss,
                                      num_tokens=count["num_tokens"], num_seqs=count["num_seqs"],
                                      ref_logprobs_BR=ref, rollout_logprobs_BR=rollout)
        return value, (metrics if bool(mask.any()) else None)

    # ---- supervised (warm start, SFT) and DPO -------------------------------------------

    def train_sft(self, micro_batches: list[dict], num_tokens: int) -> dict:
        """One optimizer step of token-mean cross-entropy on `loss_mask_BT` tokens over this rank's
        micro-batches (packed or padded, see `rlhf.data.sequences`); `num_tokens` is the global
        count of loss tokens in the step's batch."""
        self.engine.train()
        losses = []  # read once at the end: a read per micro-batch would make the GPU wait for the host

        def loss_of(mb):
            nll, _ = self._nll(mb)
            loss = nll / num_tokens
            losses.append(loss.detach())
            return loss, None

        grad_norm, _ = self._accumulate(micro_batches, loss_of)
        self.version += 1
        return {"sft/loss": float(torch.stack(losses).sum()), "sft/grad_norm": grad_norm,
                "sft/skipped_steps": self._take_skips()}

    @torch.no_grad()
    def sft_eval(self, batch: dict) -> tuple[float, int]:
        """(summed negative log-likelihood, loss tokens) of a held-out batch."""
        self.engine.eval()
        parts = [self._nll(mb) for mb in self._micro(batch)]
        return sum(float(n) for n, _ in parts), sum(c for _, c in parts)

    def _nll(self, mb: dict) -> tuple[torch.Tensor, int]:
        lp, mask = loss_token_logprobs(self.engine, mb, self.device)
        return -(lp * mask).sum(), int(mb["loss_mask_BT"][:, 1:].sum())  # counted on the host: no GPU wait

    def train_preference(self, micro_batches: list[dict], ref_logps: Optional[list[torch.Tensor]], num_pairs: int,
                         loss: dict) -> dict:
        """One optimizer step of `pair_loss` (settings `loss`: loss_type, beta, label_smoothing,
        simpo_gamma, orpo_lambda). Micro-batch i holds k chosen rows then their k rejected rows,
        `ref_logps[i]` the reference's summed log-probs of the same 2k examples (None for the
        reference-free SimPO and ORPO); `num_pairs` is global."""
        def step_loss(i, chosen, rejected):
            lengths = sequence_lengths(micro_batches[i]).to(self.device)
            k = len(chosen)
            ref = ref_logps[i].to(self.device) if ref_logps is not None else None
            return pair_loss(loss["loss_type"], chosen, rejected, lengths[:k], lengths[k:],
                             ref[:k] if ref is not None else None, ref[k:] if ref is not None else None,
                             **{key: v for key, v in loss.items() if key != "loss_type"})

        scores = lambda mb: sequence_logps(self.engine, mb, self.device)  # noqa: E731
        return self._pair_step(micro_batches, num_pairs, "pair", scores, step_loss)

    def train_kto(self, micro_batches: list[dict], ref_logps: list[torch.Tensor], desirable: list[torch.Tensor],
                  num_examples: int, kto: dict) -> dict:
        """One optimizer step of `kto_loss` (settings `kto`: beta, lambda_d, lambda_u). Micro-batch
        i holds k examples then k mismatched (prompt, other completion) rows for the reference
        point; `ref_logps[i]` the reference's summed log-probs of all 2k rows, `desirable[i]`
        the k labels; `num_examples` is global."""
        self.engine.train()
        def loss_of(item):
            mb, ref, labels = item
            logps, ref = sequence_logps(self.engine, mb, self.device), ref.to(self.device)
            k = len(labels)
            value, m = kto_loss(logps[:k], ref[:k], labels.to(self.device), logps[k:], ref[k:], **kto)
            return value * (k / num_examples), {f"kto/{key}": v for key, v in m.items()} | {"kto/loss": value.item()}

        grad_norm, metrics = self._accumulate(list(zip(micro_batches, ref_logps, desirable)), loss_of)
        self.version += 1
        return combine_shards(metrics) | {"kto/grad_norm": grad_norm, "kto/skipped_steps": self._take_skips()}

    @torch.no_grad()
    def sequence_logps(self, batch: dict) -> torch.Tensor:
        self.engine.eval()
        return sequence_logps(self.engine, batch, self.device).cpu()
