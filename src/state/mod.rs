//! What prbot keeps between cycles: records, the day's ledger, and their copy on the
//! remote's state ref.

pub(crate) mod budget;
pub(crate) mod remote;
pub(crate) mod store;
