pub mod build;
pub mod migrate;
pub mod models;
pub mod sidecar;
pub mod up;
