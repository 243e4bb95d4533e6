//! The end-to-end tests: real `lagesbild serve` processes on loopback, real
//! mutual TLS, real stores, the real command line. One test binary, so the
//! world is linked once; each module is one area of the product.

mod common;

mod audit;
mod availability;
mod console;
mod demo;
mod events;
mod federation_tls;
mod identity_provider;
mod layering;
mod operations;
mod people;
mod picture;
mod privacy;
mod reports;
mod serve_config;
mod tokens;
