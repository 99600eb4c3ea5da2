//! The host's log, under the plugin's name.
//!
//! The functions take a finished message; the crate-level macros [`trace!`](crate::trace),
//! [`debug!`](crate::debug), [`info!`](crate::info), [`warn!`](crate::warn) and
//! [`error!`](crate::error) take `format!` arguments. What the host keeps depends on its own
//! log filter.

use crate::bindings::wazoo::plugin::log as imports;
use crate::LogLevel;

/// Writes `message` to the host's log at `level`.
pub fn log(level: LogLevel, message: &str) {
    imports::log(level, message);
}

/// Writes `message` at [`LogLevel::Trace`].
pub fn trace(message: &str) {
    log(LogLevel::Trace, message);
}

/// Writes `message` at [`LogLevel::Debug`].
pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}

/// Writes `message` at [`LogLevel::Info`].
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

/// Writes `message` at [`LogLevel::Warn`].
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// Writes `message` at [`LogLevel::Error`].
pub fn error(message: &str) {
    log(LogLevel::Error, message);
}

/// Formats its arguments like `format!` and writes them to the host's log at [`LogLevel::Trace`].
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::log($crate::LogLevel::Trace, &::std::format!($($arg)+)) };
}

/// Formats its arguments like `format!` and writes them to the host's log at [`LogLevel::Debug`].
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::log($crate::LogLevel::Debug, &::std::format!($($arg)+)) };
}

/// Formats its arguments like `format!` and writes them to the host's log at [`LogLevel::Info`].
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::log($crate::LogLevel::Info, &::std::format!($($arg)+)) };
}

/// Formats its arguments like `format!` and writes them to the host's log at [`LogLevel::Warn`].
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::log($crate::LogLevel::Warn, &::std::format!($($arg)+)) };
}

/// Formats its arguments like `format!` and writes them to the host's log at [`LogLevel::Error`].
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::log($crate::LogLevel::Error, &::std::format!($($arg)+)) };
}
