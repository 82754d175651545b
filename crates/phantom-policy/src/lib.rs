//! Phantom's policies, compiled ahead of time.
//!
//! - [`seccomp`]: the OCI `linux.seccomp` section compiled to one seccomp BPF program,
//!   serialisable and loaded with one `seccomp()` call.
//! - [`profile`]: profiles, a YAML policy DSL (`docs/policies.md`), and the built-in
//!   ones of `profiles/` ([`Catalog`]).
//! - [`cache`]: the content-addressed cache of compiled filters ([`PolicyCache`]), which
//!   the runtime's create path uses for every container's `linux.seccomp`.
//! - [`landlock`]: compiled Landlock rules and [`landlock::apply`].
//! - [`policy`]: a profile compiled into everything the runtime applies
//!   ([`CompiledPolicy`]).
//! - [`narrow`]: a request may only narrow its profile ([`check_narrowing`]).
//! - [`units`]: the one reading of sizes and durations.
//! - [`oci`]: a profile turned into a config.json ([`to_oci_spec`]) and the annotation
//!   contract with the runtime.

pub mod cache;
pub mod egress;
pub mod landlock;
pub mod narrow;
pub mod oci;
pub mod policy;
pub mod profile;
pub mod seccomp;
pub mod units;

pub use cache::{CacheKey, CacheOutcome, PolicyCache};
pub use egress::{AllowRule, Cidr, EgressRules};
pub use landlock::{LandlockError, LandlockRules, LandlockStatus};
pub use narrow::{
    check_limits, check_narrowing, check_narrowing_raised, egress_rules, EgressNarrowingError,
    Loosened, Narrowing, NarrowingError, Raised,
};
pub use oci::{to_oci_spec, EgressNet, SandboxOptions};
pub use policy::{compile_profile, CompiledPolicy};
pub use profile::{Catalog, Mode, NetworkMode, Profile, ProfileError};
pub use seccomp::{
    compile_oci, compile_oci_for, explain, CompiledFilter, Explanation, SeccompError, TargetArch,
    MAX_INSNS,
};
