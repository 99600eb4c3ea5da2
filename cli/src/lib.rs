//! The library half of `wazoo-cli`: the `wazoo run` configuration file ([`config`]) and the
//! TLS and SASL settings it shares with the zkCli-like commands ([`secure`]).
//!
//! **Not a stable API.** This library exists so that wazoo's fuzz targets can reach the
//! configuration parser; the `wazoo` binary is this package's product. Anything here may change
//! in any release, patch releases included. To use ZooKeeper or plugins from Rust, depend on the
//! `wazoo` crate.

pub mod config;
pub mod secure;
