//! The overlay's topology: the YAML fleet file, its validation, geography, paths,
//! local repair, demand and placement.
//!
//! Pure: no sockets, no clock, no async. `parse` turns text into a [`Topology`] or
//! into every error found; `load` reads a file first; `world` is the shipped default.
//! The one file access, [`read_config_text`] (and [`read_bounded_bytes`]), reads only
//! regular files of bounded size and is shared with the daemons' config files; the
//! limits every document is held to are listed in [`doc`]. [`repair`] gives every
//! node a path around any single failure; [`demand`] says what classes must be
//! carried; [`placement`] puts them on paths.

mod compile;
mod countries;
pub mod demand;
pub mod disjoint;
pub mod doc;
mod error;
pub mod geo;
mod lines;
mod model;
pub mod paths;
pub mod placement;
mod raw;
mod read;
pub mod repair;
mod yaml;

pub use compile::{is_valid_id, parse, SCHEMA_VERSION};
pub use countries::is_iso_alpha2;
pub use doc::{read_bounded_bytes, read_config_text, ReadError, MAX_CONFIG_BYTES};
pub use error::{ConfigErrors, Diagnostic, LoadError};
pub use model::{
    wire_key, Controller, Link, LinkIdx, LinkKind, Node, NodeIdx, Protocol, Service, Topology,
    UnknownNode, DEFAULT_BUDGET_US,
};

/// The shipped default topology (55 cities, 16 countries, 5 undersea lines), as text.
pub const WORLD_YAML: &str = include_str!("../world.yaml");

/// The name the embedded default goes by in messages.
pub const WORLD_SOURCE: &str = "topology/world.yaml (embedded)";

/// The shipped default topology, validated.
pub fn world() -> Result<Topology, ConfigErrors> {
    parse(WORLD_SOURCE, WORLD_YAML)
}

/// Reads and validates a topology file: a regular UTF-8 file of at most
/// [`MAX_CONFIG_BYTES`], read with [`read_config_text`].
pub fn load(path: &std::path::Path) -> Result<Topology, LoadError> {
    let text = read_config_text(path, MAX_CONFIG_BYTES)?;
    Ok(parse(&path.display().to_string(), &text)?)
}
