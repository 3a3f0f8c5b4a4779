//! Shared helpers for weft's benchmarks (ratio printing against baselines).
