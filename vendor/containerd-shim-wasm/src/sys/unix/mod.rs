pub mod container;

mod pid_fd;
pub mod resident;
