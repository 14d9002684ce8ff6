pub mod container;

mod pid_fd;
pub(crate) mod resident;
