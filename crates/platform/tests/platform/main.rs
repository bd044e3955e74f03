//! The platform's services end to end, each case on a fresh SQLite file and on a fresh
//! PostgreSQL schema: feed import, encryption at rest, masking and audit of reads, operators
//! and sign-in, the demo city, and reopening the vault.

mod fixture;

mod applications;
mod apps;
mod at_rest;
mod cards;
mod concurrency;
mod demo;
mod disbursements;
mod ecode;
mod import;
mod ledger;
mod lifecycle_random;
mod lookup;
mod operators;
mod production;
mod purchases;
mod vault;
