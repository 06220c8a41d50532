//! `aura-policy`: the policy language and target declarations that people write in YAML,
//! and their validation.
//!
//! Both the daemon (which runs the controls) and the console (`aura policy validate`,
//! which must work without a daemon) use this crate, so it holds the schema, the loader
//! and the checks, and nothing that talks to a model or a socket.
//!
//! A policies folder holds controls (`*.yaml` anywhere), and three reserved
//! sub-folders: `frameworks/` (crosswalk data: clause id -> title), `waivers/` and
//! `attestations/`. `templates/` is skipped (document templates for users).
//!
//! Every problem is a [`Diagnostic`] naming the file, line and column, what is wrong, and
//! where possible how to fix it. Loading never stops at the first problem in a folder: it
//! reports all of them, so a policy author fixes a folder in one pass.

pub mod control;
pub mod coverage;
pub mod crosswalk;
pub mod detector;
pub mod diagnostic;
pub mod field_path;
pub mod mutator;
pub mod record;
pub mod schedule;
pub mod set;
pub mod target;
pub mod template;
mod yaml;

pub use control::{Control, ControlKind, ProbeSpec, Threshold};
pub use detector::{DetectorSpec, MatchMode, RefusalExpectation};
pub use diagnostic::{Diagnostic, Diagnostics};
pub use mutator::Mutator;
pub use set::{PolicySet, load_policies, load_targets};
pub use target::{TargetKind, TargetSpec};

/// Largest policy or target file accepted, in bytes. Policies are hand-written; a file
/// larger than this is a mistake (or an attack), and reading it would hold up a reload.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
