pub mod build;
pub mod migrate;
pub mod up;
