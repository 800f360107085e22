//! The overlay's topology: the YAML fleet file, its validation, geography, paths,
//! demand and placement.
//!
//! Pure: no sockets, no clock, no async. `parse` turns text into a [`Topology`] or
//! into every error found; `load` reads a file first; `world` is the shipped default.
//! [`demand`] says what classes must be carried; [`placement`] puts them on paths.

mod compile;
mod countries;
pub mod demand;
pub mod doc;
mod error;
pub mod geo;
mod model;
pub mod paths;
pub mod placement;
mod raw;
mod yaml;

pub use compile::{is_valid_id, parse, SCHEMA_VERSION};
pub use countries::is_iso_alpha2;
pub use error::{ConfigErrors, Diagnostic, LoadError};
pub use model::{
    wire_key, Controller, Link, LinkIdx, LinkKind, Node, NodeIdx, Protocol, Service, Topology,
    UnknownNode,
};

/// The shipped default topology (55 cities, 16 countries, 5 undersea lines), as text.
pub const WORLD_YAML: &str = include_str!("../world.yaml");

/// The name the embedded default goes by in messages.
pub const WORLD_SOURCE: &str = "topology/world.yaml (embedded)";

/// The shipped default topology, validated.
pub fn world() -> Result<Topology, ConfigErrors> {
    parse(WORLD_SOURCE, WORLD_YAML)
}

/// Reads and validates a topology file.
pub fn load(path: &std::path::Path) -> Result<Topology, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(parse(&path.display().to_string(), &text)?)
}
