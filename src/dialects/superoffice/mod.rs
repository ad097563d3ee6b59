//! SuperOffice NetServer dialect: REST agents and SOAP services over the ledger.

pub mod rest;
pub mod soap;
