"""One module per group of faults; each exposes `SCENARIOS`: name → function(ctx) → Verdict."""
