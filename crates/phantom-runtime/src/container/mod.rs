//! One lifecycle verb per file.

pub mod checkpoint;
pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod kill;
pub mod pause;
pub mod ps;
pub mod restore;
pub mod run;
pub mod start;
pub mod status;
pub mod update;
pub mod zygote;

pub use checkpoint::{checkpoint, CheckpointOptions};
pub use create::{create, CreateOptions};
pub use delete::delete;
pub use exec::{exec, exec_process, ExecArgs, ExecOptions};
pub use kill::{kill, parse_signal};
pub use pause::{pause, resume};
pub use restore::{restore, RestoreOptions};
pub use run::{run, RunOptions};
pub use start::start;
pub use status::{list, state};
pub use update::{parse_resources, update};
