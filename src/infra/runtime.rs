//! The async runtime every entry point runs on: two workers (the machines prbot targets
//! are small), timers and sockets on.

pub(crate) fn new() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
}
