//! Strict wire types: exactly what the YAML files may say, nothing resolved. Every struct
//! denies unknown fields; no `flatten` or `untagged` (they lose positions and give poor
//! errors). Values that later validation talks about carry their position (`Sp`).

pub(crate) mod lab;
pub(crate) mod payload;
pub(crate) mod scenario;
