//! What the benchmark programs (`wazoo-bench`, `wazoo-lanes`, `wazoo-guests`) share.

pub mod cpu;
