//! Lab, payload and scenario YAML: strict wire types, validation into a resolved Plan, JSON schemas.
