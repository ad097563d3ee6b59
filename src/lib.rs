//! allot: a license-seat server. The [`ledger`] is the one core every protocol adapter calls.

pub mod ledger;
