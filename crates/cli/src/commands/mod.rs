//! One module per subcommand.

pub(crate) mod audit;
pub(crate) mod certs;
pub(crate) mod demo;
pub(crate) mod ingest;
pub(crate) mod people;
pub(crate) mod policy;
pub(crate) mod query;
pub(crate) mod scrub;
pub(crate) mod serve;
pub(crate) mod status;
pub(crate) mod token;
pub(crate) mod watch;
