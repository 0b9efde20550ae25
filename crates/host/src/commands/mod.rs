pub mod build;
pub mod migrate;
pub mod sidecar;
pub mod up;
