"""The seed paper's claims tested on toy regimes where they should show (issue 16): sparse events
(CenDist), forgetting (token-aware KL, RL vs SFT) and ambiguous queries (the CLIP-margin filter).
`python -m toy_claims [REGIME ...] [--quick]` from benchmarks/ (`make bench-claims`)."""
