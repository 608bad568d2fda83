"""Edge workers: decode frames, choose split arms, run the batched early exit, offload."""
